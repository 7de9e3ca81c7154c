from plsc_cli.cli.app import main

main()
