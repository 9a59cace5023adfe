//! The `certinext` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "certinext",
    version,
    about = "A multi-tenant certificate platform for Kubernetes"
)]
struct Cli {
    /// Log filter, as RUST_LOG: `info`, `certinext=debug,kube=warn`, …
    #[arg(long, global = true, env = "CERTINEXT_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every CustomResourceDefinition as YAML, or write one file per kind.
    Crd {
        /// Write `<kind>.yaml` files into this directory instead of printing; repeat it to
        /// write several copies (`crds`, `config/crd`, `charts/certinext-operator/crds`).
        #[arg(long, value_name = "DIR")]
        output_dir: Vec<PathBuf>,
    },
    /// Run the operator on an embedded Kubernetes API server, with the quickstart applied.
    Dev(certinext::dev::DevArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Crd { output_dir } if output_dir.is_empty() => certinext::crd::all_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(Into::into),
        Command::Crd { output_dir } => output_dir
            .iter()
            .try_for_each(|dir| certinext::crd::write_dir(dir)),
        Command::Dev(args) => runtime().and_then(|rt| rt.block_on(certinext::dev::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
