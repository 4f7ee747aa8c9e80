//! The `ckptctl` binary: parse arguments, run, exit with the spec's code.

fn main() -> std::process::ExitCode {
    ckptctl::cli::main()
}
