fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox compiles the .proto in pure Rust, so no system protoc is needed anywhere.
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["peer.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
