use clap::Parser;
use fabric_master::cli::{self, Cli, Command};

// glibc malloc contends on its arena locks when the runtime's threads hand messages to
// each other; mimalloc's per-thread heaps do not (see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    cli::init_logging(args.log_format);
    match args.command {
        Command::Version => {
            println!("fabric-master {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Keygen(k) => cli::keygen(k),
        Command::Start(s) => {
            let settings = s.settings()?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(fabric_master::server::start(settings))
        }
        Command::Bench(b) => runtime()?.block_on(fabric_master::bench::run(b)),
        Command::Cluster(c) => runtime()?.block_on(cli::cluster::cluster(c)),
        Command::Backup(b) => runtime()?.block_on(cli::cluster::backup(b)),
        Command::Restore(r) => cli::cluster::restore(r),
        Command::State(s) => runtime()?.block_on(cli::cluster::state(s)),
        Command::Certs(c) => cli::certs::certs(c),
        Command::AuthzTable => cli::authz_table(),
        Command::Probe(p) => cli::probe::probe(p),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
