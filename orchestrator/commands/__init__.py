"""One module per ``orchestrate`` command, plus the helpers they share (``_common``)."""
