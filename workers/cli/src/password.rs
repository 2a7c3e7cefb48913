//! Passwords for the commands that need one: never an argument (it would show in `ps` and the
//! shell's history). At a terminal, a prompt that does not echo; otherwise a line of standard
//! input, so scripts pipe it in.

use std::io::IsTerminal;

/// Where passwords come from.
pub enum Source {
    /// A prompt on the terminal, without echo.
    Terminal,
    /// Lines of standard input.
    Stdin,
}

impl Source {
    /// The terminal when standard input is one, standard input otherwise.
    pub fn detect() -> Self {
        if std::io::stdin().is_terminal() {
            Self::Terminal
        } else {
            Self::Stdin
        }
    }

    /// One password: asked with `prompt` at a terminal, the next line of standard input
    /// otherwise. An empty one is refused.
    pub fn read(&self, prompt: &str) -> anyhow::Result<String> {
        let password = match self {
            Self::Terminal => rpassword::prompt_password(prompt)?,
            Self::Stdin => {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        anyhow::ensure!(
            !password.is_empty(),
            "no password given ({})",
            match self {
                Self::Terminal => "type it at the prompt",
                Self::Stdin => "give it as a line of standard input",
            }
        );
        Ok(password)
    }

    /// A new password: at a terminal, asked twice and refused unless both match.
    pub fn read_new(&self, prompt: &str) -> anyhow::Result<String> {
        let password = self.read(prompt)?;
        if let Self::Terminal = self {
            let again = self.read("Again, to confirm: ")?;
            anyhow::ensure!(
                again == password,
                "the two passwords differ; nothing was changed"
            );
        }
        Ok(password)
    }
}

/// A password for `prompt`, from the terminal or standard input.
pub fn read(prompt: &str) -> anyhow::Result<String> {
    Source::detect().read(prompt)
}

/// A new password for `prompt` (asked twice at a terminal).
pub fn read_new(prompt: &str) -> anyhow::Result<String> {
    Source::detect().read_new(prompt)
}
