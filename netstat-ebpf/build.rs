use which::which;

/// The BPF object is linked by `bpf-linker`, a dependency cargo cannot see. Rebuild when the
/// linker binary changes so a reinstalled linker (say, against another LLVM) takes effect.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!(
            "cargo:warning=bpf-linker is not on PATH; run `cargo xtask setup` to install it"
        ),
    }
}
