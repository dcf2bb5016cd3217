"""Jobs that ship with Sundial: the built-in maintenance job and the demo examples."""
