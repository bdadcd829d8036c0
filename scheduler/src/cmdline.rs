//! What the project's binaries share on their command lines: usage errors as one line (exit 2)
//! and any error folded into one line. The scheduler's binary uses it; `tinykv-server`,
//! `tinykv-ctl` and `tinykv-bench` reach it through `kvserver::config`.

/// `s` with its lines trimmed and joined by spaces: one line for stderr.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the command line of binary `name`; on bad usage prints one line (and where to get
/// help) on stderr and exits with status 2. `--help` and `--version` print and exit 0.
pub fn parse_args_or_exit<T: clap::Parser>(name: &str) -> T {
    match T::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let text = e.to_string();
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .collect();
            eprintln!("{} (see {name} --help)", one_line(&kept.join("\n")));
            std::process::exit(2);
        }
    }
}
