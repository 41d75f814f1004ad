//! Compiles the vendored kubelet protos with protox (pure Rust, so no `protoc`
//! is needed on build machines) and generates tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/podresources/v1/api.proto",
        "proto/deviceplugin/v1beta1/api.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
