use clap::Parser;
use handoff_bridge::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    let level = cli.log.as_deref().unwrap_or(default_level);
    let filter = match EnvFilter::try_new(level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("error: HANDOFF_LOG / --log '{level}' is not a valid filter: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let result = match cli.command {
        Command::Serve(args) => cli::serve(*args).await,
        Command::Demo(args) => handoff_bridge::demo::run(args).await,
        Command::Sandbox(args) => cli::sandbox(args).await,
        Command::Send(args) => cli::send(args).await,
        Command::Rekey(args) => cli::rekey(args).await,
        Command::Openapi => {
            println!(
                "{}",
                handoff_bridge::http::api_document()
                    .to_pretty_json()
                    .expect("the OpenAPI document serializes")
            );
            Ok(())
        }
        Command::Keygen => {
            println!(
                "{}",
                handoff_bridge::connection::crypto::EncryptionKey::generate_base64()
            );
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
