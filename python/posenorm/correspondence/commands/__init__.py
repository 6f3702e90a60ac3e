"""The subcommands of tools/correspondence.py, one module each, named as the
subcommand (`classify_fig5` is Figure 5 of `classify`; `all` runs the
others).  A module exposes NAME, HELP, add_arguments(parser), run(args) ->
its section of results.json and markdown(section) -> its part of README.md
(USES_DATA = False keeps --data off its options; REPORT = False: it writes
its own files after its check_outputs(args), no section of results.json).
They read the parsed arguments and call the algorithms of
posenorm.correspondence with explicit values."""
