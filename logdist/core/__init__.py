"""Pure logic: no sockets, no files, no event loop. Time comes in through a `now` callable."""
