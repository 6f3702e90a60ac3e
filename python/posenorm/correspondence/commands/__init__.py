"""The subcommands of tools/correspondence.py, one module each, named as the
subcommand (`classify_fig5` is Figure 5 of `classify`; `all` runs the
others).  A module exposes NAME, HELP, add_arguments(parser), run(args) ->
its section of results.json and markdown(section) -> its part of README.md
(USES_DATA = False keeps --data off its options).  They read the parsed
arguments and call the algorithms of posenorm.correspondence with explicit
values."""
