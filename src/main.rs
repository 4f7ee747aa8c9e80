//! The `ckptctl` binary: parse arguments, run, exit with the spec's code.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ckptctl::cli::main()
}
