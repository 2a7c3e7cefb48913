//! The exit codes of `qbill`, for scripts and monitors:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done; for `client`, the engine replied `ok` |
//! | 1 | it could not be done: a setting, the database, a queue or a file failed (the error is printed) |
//! | 2 | bad usage: an unknown command or flag, a missing or malformed argument (clap's) |
//! | 3 | `client`: the engine replied with an error (the reply is printed; its `code` says which) |
//! | 4 | a check found a problem: `status --check`, `payments discrepancies`, `migrate --dry-run` with migrations pending |

use std::process::ExitCode;

pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const ERROR_REPLY: u8 = 3;
pub const CHECK_FAILED: u8 = 4;

/// `CHECK_FAILED` when `problems`, success otherwise.
pub fn check(problems: bool) -> ExitCode {
    if problems {
        ExitCode::from(CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
