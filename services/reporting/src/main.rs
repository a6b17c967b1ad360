//! `dure-reporting`: the reporting service alone, as a container image runs
//! it. It takes the same flags and `DURE_*` variables as `dure run reporting`.

/// See docs/decisions/0003: mimalloc, committed lazily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dure_chassis::process::service_main::<dure_reporting::Reports>()
}
