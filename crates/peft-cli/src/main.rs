//! The `peft` command.

mod commands;
mod data;
mod dtype;
mod hub;
mod input;
mod labels;
mod metrics;
mod models;
mod plot;
mod rng;
mod span_metrics;
mod train;

use clap::{Parser, Subcommand};

/// Parameter-efficient fine-tuning for Burn, from the shell.
#[derive(Parser, Debug)]
#[command(name = "peft", version, about)]
struct Cli {
    /// Print the full error chain and a backtrace on failure.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// LoRA on the pretrained MiniLM-L6 encoder for 3-way tweet sentiment, start to finish.
    Demo(commands::demo::Args),
    /// Continue prompts (causal LMs) or transcribe (Whisper), with adapters.
    Generate(commands::generate::Args),
    /// Describe an adapter folder: method, base model, targeted modules, ranks, size, dtype.
    Inspect(commands::inspect::Args),
    /// Fine-tune a model folder on a CSV / JSON Lines file and save the adapter.
    Train(commands::train::Args),
    /// Fold an adapter into its base and write a model folder transformers can load.
    Merge(commands::merge::Args),
    /// Run a model (with adapters) on token ids and print its head's output as JSON.
    Logits(commands::logits::Args),
    /// Apply a trained adapter to texts: labels and probabilities, word labels, or completions.
    Predict(commands::predict::Args),
}

/// Shows the library's notes about adapters written with older module names on stderr (only
/// those: other log records keep the command's output as it was).
struct Notes;

impl log::Log for Notes {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("peft::legacy") && metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("note: {}", record.args());
        }
    }

    fn flush(&self) {}
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if log::set_logger(&Notes).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Logits(args) => commands::logits::run(args),
        Command::Merge(args) => commands::merge::run(args),
        Command::Train(args) => commands::train::run(args),
        Command::Predict(args) => commands::predict::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if cli.debug {
                // The whole chain, and a backtrace when RUST_BACKTRACE=1.
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {}", one_line(&e));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: library errors already include their
/// source in their message, which `{:#}` would print a second time.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(io).context("cannot read model/config.json: No such file or directory").context("loading the model");
        assert_eq!(one_line(&error), "loading the model: cannot read model/config.json: No such file or directory");
    }
}
