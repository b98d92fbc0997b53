//! The command line's behaviour on good and bad input.
