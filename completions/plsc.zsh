#compdef plsc

_plsc_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _PLSC_COMPLETE=complete_zsh plsc)
}

compdef _plsc_completion plsc
