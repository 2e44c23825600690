"""Text renderers for people (the CLI's; the library never imports them)."""
