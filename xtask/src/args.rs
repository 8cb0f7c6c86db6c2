//! The options of the tasks, all parsed with [`lexopt`]: the task name, and the few shapes of
//! option the tasks share (none, one flag, a positive number). A task with more options
//! (`bench`, `bench-scaling`) loops over [`Parser::next`] itself and uses these helpers for
//! its values and its errors.

use anyhow::{Result, bail};
use lexopt::{Arg, Parser, ValueExt as _};

/// The task name, or `None` for no arguments or `--help`.
pub(crate) fn task(p: &mut Parser, usage: &str) -> Result<Option<String>> {
    match p.next()? {
        None | Some(Arg::Short('h') | Arg::Long("help")) => Ok(None),
        Some(Arg::Value(v)) if v == "help" => Ok(None),
        Some(Arg::Value(v)) => Ok(Some(v.string()?)),
        Some(other) => bail!("{}\n\n{usage}", other.unexpected()),
    }
}

/// Refuses an argument the task does not take, printing the usage on `--help` and exiting.
pub(crate) fn unexpected(arg: Arg<'_>, usage: &str) -> Result<()> {
    if matches!(arg, Arg::Short('h') | Arg::Long("help")) {
        print!("{usage}");
        std::process::exit(0);
    }
    bail!("{}\n\n{usage}", arg.unexpected())
}

/// A task without options.
pub(crate) fn none(p: &mut Parser, usage: &str) -> Result<()> {
    match p.next()? {
        None => Ok(()),
        Some(arg) => unexpected(arg, usage),
    }
}

/// A task whose one option is the flag `--<name>`: whether it was given.
pub(crate) fn flag(p: &mut Parser, name: &str, usage: &str) -> Result<bool> {
    let mut on = false;
    while let Some(arg) = p.next()? {
        match arg {
            Arg::Long(l) if l == name => on = true,
            other => unexpected(other, usage)?,
        }
    }
    Ok(on)
}

/// A task whose one option is `--release`.
pub(crate) fn release(p: &mut Parser, usage: &str) -> Result<bool> {
    flag(p, "release", usage)
}

/// The value of option `name` as a positive integer.
pub(crate) fn positive(p: &mut Parser, name: &str, usage: &str) -> Result<usize> {
    let value = p.value()?.string()?;
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--{name} wants a positive integer, got {value:?}\n\n{usage}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(args: &[&str]) -> Parser {
        Parser::from_args(args.iter().copied())
    }

    #[test]
    fn tasks_flags_and_numbers() {
        assert_eq!(task(&mut parser(&[]), "").unwrap(), None);
        assert_eq!(task(&mut parser(&["--help"]), "").unwrap(), None);
        let mut p = parser(&["test", "--release"]);
        assert_eq!(task(&mut p, "").unwrap().as_deref(), Some("test"));
        assert!(release(&mut p, "").unwrap());
        assert!(!release(&mut parser(&[]), "").unwrap());
        let err = release(&mut parser(&["--check"]), "USAGE").unwrap_err();
        assert!(
            err.to_string().contains("invalid option '--check'"),
            "{err}"
        );
        assert!(err.to_string().ends_with("USAGE"), "{err}");
        let err = none(&mut parser(&["extra"]), "").unwrap_err();
        assert!(
            err.to_string().contains("unexpected argument \"extra\""),
            "{err}"
        );
        let mut p = parser(&["--reps", "3"]);
        assert!(matches!(p.next().unwrap(), Some(Arg::Long("reps"))));
        assert_eq!(positive(&mut p, "reps", "").unwrap(), 3);
        let mut p = parser(&["--reps=0"]);
        p.next().unwrap();
        let err = positive(&mut p, "reps", "").unwrap_err();
        assert!(
            err.to_string()
                .contains("--reps wants a positive integer, got \"0\""),
            "{err}"
        );
    }
}
