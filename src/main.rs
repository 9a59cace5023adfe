//! The `certinext` command.

use std::path::PathBuf;
use std::process::ExitCode;

use certinext::api::order::Decision;
use clap::{Parser, Subcommand};

/// jemalloc instead of the system allocator: the operator and devcluster allocate many small,
/// short-lived objects (JSON values, watch events), where glibc's malloc spent a fifth of the
/// CPU time. Measured with `certinext bench`, jemalloc was faster than glibc and kept less
/// resident than mimalloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "certinext",
    version,
    about = "A multi-tenant certificate platform for Kubernetes"
)]
struct Cli {
    /// Log filter, as RUST_LOG: `info`, `certinext=debug,kube=warn`, …
    #[arg(
        long,
        alias = "log",
        global = true,
        value_name = "FILTER",
        env = "CERTINEXT_LOG_LEVEL",
        default_value = "info"
    )]
    log_level: String,
    /// Log lines as plain text or as JSON objects (one per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "CERTINEXT_LOG_FORMAT",
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The name `--log-format` takes.
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against a cluster: in-cluster, or with --kubeconfig.
    Run(certinext::run::RunArgs),
    /// Print every CustomResourceDefinition as YAML, or write one file per kind.
    Crd {
        /// Write `<kind>.yaml` files into this directory instead of printing; repeat it to
        /// write several copies (`crds`, `config/crd`, `charts/certinext-operator/crds`).
        #[arg(long, value_name = "DIR")]
        output_dir: Vec<PathBuf>,
    },
    /// Run the operator on an embedded Kubernetes API server, with the quickstart applied.
    Dev(certinext::dev::DevArgs),
    /// Approve an Order waiting in PendingApproval; it is then charged and issued.
    Approve(certinext::approval::DecideArgs),
    /// Deny an Order waiting in PendingApproval; it ends Denied, uncharged.
    Deny(certinext::approval::DecideArgs),
    /// Measure issuance end to end on an embedded API server, beside the raw signing rate;
    /// the last line printed is a JSON summary.
    Bench(certinext::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging(&cli.log_level, cli.log_format) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(certinext::run::run(args))),
        Command::Crd { output_dir } if output_dir.is_empty() => certinext::crd::all_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(Into::into),
        Command::Crd { output_dir } => output_dir
            .iter()
            .try_for_each(|dir| certinext::crd::write_dir(dir)),
        Command::Dev(args) => runtime().and_then(|rt| rt.block_on(certinext::dev::run(args))),
        Command::Approve(args) => decide(args, Decision::Approved),
        Command::Deny(args) => decide(args, Decision::Denied),
        Command::Bench(args) => bench(
            &args,
            &certinext::bench::Logging {
                level: cli.log_level.clone(),
                format: cli.log_format.name().to_owned(),
            },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn decide(args: certinext::approval::DecideArgs, decision: Decision) -> anyhow::Result<()> {
    let message = runtime()?.block_on(certinext::approval::decide(args, decision))?;
    println!("{message}");
    Ok(())
}

/// Runs the bench (its operator logging as `logging` says) and prints its summary; fails when
/// a certificate was not Ready or a Secret did not verify.
fn bench(
    args: &certinext::bench::BenchArgs,
    logging: &certinext::bench::Logging,
) -> anyhow::Result<()> {
    let summary = certinext::bench::run(args, logging)?;
    certinext::bench::print(&summary)?;
    anyhow::ensure!(
        summary.all_ready && summary.all_verified,
        "not every certificate was issued and verified: {}",
        summary.failures.join("; ")
    );
    Ok(())
}

fn init_logging(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|error| anyhow::anyhow!("--log-level {filter:?}: {error}"))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
