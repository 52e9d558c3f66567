//! The `ferry` command line (SPEC section 2). Only argument parsing and exit codes live here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

/// glibc's allocator serialises threads on its arena locks under sled's and the NATS client's
/// allocation-heavy paths (seen as futex waits in `ferry bench` profiles); mimalloc's per-thread
/// heaps do not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use ferry::app::{self, RunError};
use ferry::config;
use ferry::logging::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "ferry",
    version = ferry::build_info::LONG_VERSION,
    about = "Data adapter and stream replicator for NATS and JetStream",
    after_help = "Exit codes: 0 success, 1 invalid config or usage, 2 runtime failure (e.g. the state store cannot be opened)."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every pipeline in the config until SIGINT/SIGTERM; SIGHUP reloads the config.
    Run {
        /// The YAML config file.
        #[arg(short, long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// If the state store is damaged, move it aside (to ferry.db.damaged-<time>) and start
        /// with a fresh one; spooled events in the segment files are kept, replicators resume
        /// from their targets, and what was lost is logged and counted.
        #[arg(long)]
        recover_state: bool,
    },
    /// Validate the config without connecting anywhere.
    Check {
        /// The YAML config file.
        #[arg(short, long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Do not read the environment: `${VAR}` references stay as written and an unset
        /// variable is not an error (for CI, where the secrets are not). The checks of a key
        /// whose value is a reference are skipped and listed as warnings.
        #[arg(long)]
        no_env: bool,
        /// Print one JSON object on stdout: {"valid", "problems", "warnings", "summary"}.
        #[arg(long)]
        json: bool,
    },
    /// Show each pipeline's state, spool depth and last error.
    Status {
        /// The YAML config file (for the monitor's address and the state directory).
        #[arg(short, long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running instance's monitor whether it is alive (exit 0) or not (exit 1): for a
    /// container HEALTHCHECK or a script, where no HTTP client may be at hand.
    Health {
        /// The YAML config file (for the monitor's address).
        #[arg(short, long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Ask whether every pipeline is ready (`/readyz`) rather than whether ferry is alive
        /// (`/healthz`).
        #[arg(long)]
        ready: bool,
    },
    /// Force where a replicator starts next time (offline: no `ferry run` may hold the state).
    Reset {
        /// The YAML config file (for the state directory).
        #[arg(short, long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// The replicator's name.
        replicator: String,
        /// start, end, sequence:N (N is copied next) or time:RFC3339.
        #[arg(long)]
        to: String,
    },
    /// Move a site from another tool to ferry.
    Migrate {
        #[command(subcommand)]
        from: MigrateFrom,
    },
    /// Print a shell completion script to stdout (e.g. `ferry completions bash >
    /// /usr/share/bash-completion/completions/ferry`).
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, ferry(1), to stdout (e.g. `ferry man | gzip >
    /// /usr/share/man/man1/ferry.1.gz`), or write one page per command into a directory.
    Man {
        /// Write ferry.1 and a ferry-COMMAND.1 for each command into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// The benchmark suite: ferry against native baselines measured in the same run.
    Bench {
        /// Which scenarios to run.
        #[arg(value_enum, default_value = "all")]
        suite: ferry::lab::bench::Suite,
        /// Messages per run instead of each scenario's default (adapter 200,000; replicate
        /// 1,000,000; sample 500,000 from 50,000 senders; sample-1m 1,000,000 senders).
        #[arg(long)]
        messages: Option<u64>,
        /// Payload size in bytes of the replicate scenario.
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// Interleaved baseline/ferry pairs per scenario; medians are reported.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
        rounds: u64,
        /// Print the results as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// A self-contained tour: two local nats-servers, a simulated fleet, ferry adapting and replicating its events.
    Demo {
        /// Simulated nodes.
        #[arg(long, default_value_t = 2000)]
        nodes: usize,
        /// How long the fleet sends events (e.g. 20s, 2m).
        #[arg(long, default_value = "20s", value_parser = config::units::parse_duration)]
        duration: Duration,
        /// Print the summary as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MigrateFrom {
    /// Translate Choria's stream replicator config into a ferry config (printed, or written
    /// with --output), with a comment on every key that has no exact equivalent; or, with
    /// --import-state, load its sampling state into a ferry config's state store.
    #[command(name = "stream-replicator")]
    StreamReplicator {
        /// The stream replicator's YAML config (e.g. /etc/stream-replicator/sr.yaml).
        file: PathBuf,
        /// Write the ferry config to this file instead of stdout (not over an existing file
        /// unless --force).
        #[arg(short, long, value_name = "FILE", conflicts_with = "import_state")]
        output: Option<PathBuf>,
        /// Replace an existing --output file.
        #[arg(long, requires = "output")]
        force: bool,
        /// Import the stream replicator's sampling state (<state_store>/<stream>_<name>.json)
        /// into the state store of the ferry config given with --config, so that the switch
        /// announces no sender as new. Offline: ferry must not be running on that state.
        #[arg(long, requires = "config")]
        import_state: bool,
        /// The ferry config to import into (the file the translation was written to).
        #[arg(short, long, value_name = "FILE", requires = "import_state")]
        config: Option<PathBuf>,
        /// Where the stream replicator's state files are, when not at its state_store.
        #[arg(long, value_name = "DIR", requires = "import_state")]
        state_store: Option<PathBuf>,
    },
    /// Translate a Choria broker's adapters (plugin.choria.adapter.* in broker.conf) into ferry
    /// adapters that join their queue groups, so they can take over without loss or duplicates.
    #[command(name = "choria-adapters")]
    ChoriaAdapters {
        /// The broker's config (e.g. /etc/choria/broker.conf).
        file: PathBuf,
        /// Write the ferry config to this file instead of stdout (not over an existing file
        /// unless --force).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace an existing --output file.
        #[arg(long, requires = "output")]
        force: bool,
        /// The JetStream stream that captures an adapter's stream.topic, as ADAPTER=STREAM
        /// (repeatable); the broker config does not name it.
        #[arg(long = "stream", value_name = "ADAPTER=STREAM", value_parser = parse_assignment)]
        streams: Vec<(String, String)>,
    },
}

/// `NAME=VALUE`, for `--stream`.
fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() && !value.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!(
            "{text:?} is not ADAPTER=STREAM (e.g. inventory=CHORIA_REGISTRATION)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with success; a usage error is exit 1 (SPEC section
            // 2), where clap's own default would be 2, the code of a runtime failure.
            let code = if error.use_stderr() { 1 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let default_level = match &cli.command {
        Command::Run { .. } => None,
        // The other commands print their own results; keep library logs quiet unless asked.
        _ => Some("warn"),
    };
    if let Err(error) = logging::init(cli.log_format, cli.log_level.as_deref().or(default_level)) {
        eprintln!("ferry: {error}");
        return ExitCode::from(1);
    }
    match cli.command {
        Command::Check {
            config,
            no_env,
            json,
        } => check(&config, config::CheckOptions { no_env }, json),
        Command::Run {
            config,
            recover_state,
        } => run(
            &config,
            app::RunOptions {
                recover_state,
                config_path: Some(config.clone()),
            },
        ),
        Command::Status { config, json } => status(&config, json),
        Command::Health { config, ready } => health(&config, ready),
        Command::Reset {
            config,
            replicator,
            to,
        } => reset(&config, &replicator, &to),
        Command::Demo {
            nodes,
            duration,
            json,
        } => demo(nodes, duration, json),
        Command::Migrate {
            from:
                MigrateFrom::StreamReplicator {
                    file,
                    output,
                    force,
                    import_state,
                    config,
                    state_store,
                },
        } => match (import_state, config) {
            (true, Some(config)) => import_sr_state(&file, &config, state_store.as_deref()),
            _ => migrate_sr(&file, output.as_deref(), force),
        },
        Command::Migrate {
            from:
                MigrateFrom::ChoriaAdapters {
                    file,
                    output,
                    force,
                    streams,
                },
        } => migrate_choria_adapters(&file, output.as_deref(), force, streams),
        Command::Completions { shell } => completions(shell),
        Command::Man { dir } => man(dir.as_deref()),
        Command::Bench {
            suite,
            messages,
            size,
            rounds,
            json,
        } => bench(ferry::lab::bench::BenchOptions {
            suite,
            messages,
            size,
            rounds: rounds as usize,
            json,
        }),
    }
}

fn load(path: &std::path::Path) -> Result<config::schema::Config, ExitCode> {
    config::load(path).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(1)
    })
}

/// `ferry check`: exit 0 when the file is valid, 1 with every problem otherwise, whatever the
/// output format (SPEC section 2).
fn check(path: &std::path::Path, options: config::CheckOptions, json: bool) -> ExitCode {
    let checked = config::check_file(path, options);
    let mut warnings = checked.unchecked.clone();
    if let Some(config) = &checked.config {
        let references: Vec<String> = checked.references.iter().map(|r| r.path.clone()).collect();
        warnings.extend(config::permissions::warnings(path, config, &references));
    }
    let valid = checked.problems.is_empty();
    if json {
        let entries = |problems: &[config::Problem]| -> Vec<serde_json::Value> {
            problems
                .iter()
                .map(|p| serde_json::json!({ "path": p.path, "message": p.message }))
                .collect()
        };
        let report = serde_json::json!({
            "file": path.display().to_string(),
            "valid": valid,
            "problems": entries(&checked.problems),
            "warnings": entries(&warnings),
            "summary": checked.summary_json(),
        });
        let code = write_stdout(format!("{report}\n").as_bytes(), "the report");
        return if valid { code } else { ExitCode::from(1) };
    }
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if !valid {
        let error = config::ConfigError {
            file: path.to_path_buf(),
            problems: checked.problems,
        };
        eprintln!("{error}");
        return ExitCode::from(1);
    }
    for line in checked.summary() {
        println!("{line}");
    }
    println!("{}: ok", path.display());
    ExitCode::SUCCESS
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("ferry: cannot start the async runtime: {error}");
            ExitCode::from(2)
        })
}

fn run(path: &std::path::Path, options: app::RunOptions) -> ExitCode {
    // First, before anything else is logged: a log that is read later (a support case, a
    // collector's archive) says which build wrote it.
    tracing::info!(
        version = %ferry::build_info::VERSION,
        commit = %ferry::build_info::COMMIT,
        built = %ferry::build_info::DATE,
        config = %path.display(),
        "ferry starting"
    );
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    for warning in config::permissions::warnings(path, &config, &[]) {
        tracing::warn!("{warning}");
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(app::run_with(config, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit_with(&error),
    }
}

fn exit_with(error: &RunError) -> ExitCode {
    eprintln!("ferry: {error}");
    ExitCode::from(error.exit_code() as u8)
}

/// `ferry health`: 0 when the monitor answers 200, 1 otherwise (what a HEALTHCHECK needs).
fn health(path: &std::path::Path, ready: bool) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(monitor) = &config.monitor else {
        eprintln!(
            "ferry: {} has no monitor section; ferry health asks the monitor (add monitor: {{ listen: \"127.0.0.1:9464\" }})",
            path.display()
        );
        return ExitCode::from(1);
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(_) => return ExitCode::from(1),
    };
    let route = if ready { "/readyz" } else { "/healthz" };
    let address = &monitor.listen;
    match runtime.block_on(ferry::monitor::fetch(
        address,
        route,
        Duration::from_secs(5),
    )) {
        Ok((200, _)) => {
            println!(
                "ferry at {address}: {}",
                if ready { "ready" } else { "alive" }
            );
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprintln!(
                "ferry at {address}: {route} answered HTTP {code}: {}",
                body.trim()
            );
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("ferry at {address}: no answer on {route}: {error}");
            ExitCode::from(1)
        }
    }
}

fn status(path: &std::path::Path, json: bool) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let live = config.monitor.as_ref().and_then(|monitor| {
        runtime
            .block_on(ferry::monitor::fetch(
                &monitor.listen,
                "/status",
                Duration::from_secs(5),
            ))
            .ok()
    });
    let document = match live {
        Some((200, body)) => match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(mut document) => {
                document["running"] = serde_json::Value::Bool(true);
                document
            }
            Err(error) => {
                eprintln!("ferry: the monitor's /status answer is not JSON: {error}");
                return ExitCode::from(2);
            }
        },
        Some((code, _)) => {
            eprintln!("ferry: the monitor answered /status with HTTP {code}");
            return ExitCode::from(2);
        }
        None => match app::offline_status(&config) {
            Ok(document) => document,
            Err(error) if error.exit_code() == 2 => {
                eprintln!(
                    "ferry: no running instance answered on the monitor address, and the state store is unavailable: {error}"
                );
                return ExitCode::from(2);
            }
            Err(error) => return exit_with(&error),
        },
    };
    if json {
        println!("{document}");
    } else {
        if document["state"] == "none" {
            println!(
                "ferry is not running and has no state yet (nothing under {})",
                config.state_dir.display()
            );
        } else if document["running"] == serde_json::Value::Bool(false) {
            println!(
                "ferry is not running (state read from {})",
                config.state_dir.display()
            );
        }
        print!("{}", ferry::status::render_table(&document));
    }
    ExitCode::SUCCESS
}

fn reset(path: &std::path::Path, replicator: &str, to: &str) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match app::reset(&config, replicator, to) {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(error) => exit_with(&error),
    }
}

/// `ferry migrate stream-replicator FILE`: the ferry config on stdout or in `output`, the notes
/// and the check's verdict on stderr. Exit 1 when the SR file cannot be read or translated.
fn migrate_sr(file: &std::path::Path, output: Option<&std::path::Path>, force: bool) -> ExitCode {
    let (_, migration) = match ferry::migrate::stream_replicator(file) {
        Ok(done) => done,
        Err(error) => {
            eprintln!("ferry: {error}");
            return ExitCode::from(1);
        }
    };
    let what = format!("{} replicators translated", migration.replicators.len());
    let next = "docs/migrating-from-stream-replicator.md";
    deliver_translation(
        &migration.yaml,
        &migration.notes,
        (&what, next),
        output,
        force,
    )
}

/// `ferry migrate choria-adapters FILE`: as [`migrate_sr`], for a broker's adapters.
fn migrate_choria_adapters(
    file: &std::path::Path,
    output: Option<&std::path::Path>,
    force: bool,
    streams: Vec<(String, String)>,
) -> ExitCode {
    let streams = streams.into_iter().collect();
    let migration = match ferry::migrate::choria_adapters::translate_file(file, &streams) {
        Ok(migration) => migration,
        Err(error) => {
            eprintln!("ferry: {error}");
            return ExitCode::from(1);
        }
    };
    let what = format!("{} adapters translated", migration.adapters);
    let next = "docs/migrating-from-choria-adapters.md";
    deliver_translation(
        &migration.yaml,
        &migration.notes,
        (&what, next),
        output,
        force,
    )
}

/// Prints or writes a translation, then its notes and what `ferry check` says of it; `summary`
/// is what was translated and the page to read next.
fn deliver_translation(
    yaml: &str,
    notes: &[ferry::migrate::Note],
    (what, next): (&str, &str),
    output: Option<&std::path::Path>,
    force: bool,
) -> ExitCode {
    let origin = output.unwrap_or_else(|| std::path::Path::new("<stdout>"));
    let code = match output {
        None => write_stdout(yaml.as_bytes(), "the ferry config"),
        Some(path) => match write_new_file(path, yaml.as_bytes(), force) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("ferry: {message}");
                return ExitCode::from(2);
            }
        },
    };
    for note in notes {
        eprintln!("note: {}: {}", note.at, note.text);
    }
    let problems = ferry::migrate::check_yaml(yaml, origin);
    if problems.is_empty() {
        eprintln!(
            "{what}; `ferry check` accepts the result. Next: review the notes, then see {next}"
        );
    } else {
        eprintln!(
            "{what}; the translation needs attention before ferry will run it ({} problems):",
            problems.len()
        );
        for problem in &problems {
            eprintln!("  {problem}");
        }
    }
    code
}

/// Writes `bytes` to `path`, refusing to replace a file unless `force`.
fn write_new_file(path: &std::path::Path, bytes: &[u8], force: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            format!(
                "{} exists; choose another --output or add --force to replace it",
                path.display()
            )
        } else {
            format!("cannot write {}: {error}", path.display())
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// `ferry migrate stream-replicator FILE --import-state -c FERRY.yaml`.
fn import_sr_state(
    file: &std::path::Path,
    config: &std::path::Path,
    state_store: Option<&std::path::Path>,
) -> ExitCode {
    let (sr, migration) = match ferry::migrate::stream_replicator(file) {
        Ok(done) => done,
        Err(error) => {
            eprintln!("ferry: {error}");
            return ExitCode::from(1);
        }
    };
    let config = match load(config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    match ferry::migrate::state_import::import(&sr, &migration.replicators, &config, state_store) {
        Ok(reports) => {
            for report in reports {
                println!("{}", report.summary());
            }
            ExitCode::SUCCESS
        }
        Err(error) => exit_with(&error),
    }
}

fn demo(nodes: usize, duration: Duration, json: bool) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let options = ferry::lab::demo::DemoOptions {
        nodes,
        duration,
        json,
    };
    match runtime.block_on(ferry::lab::demo::run(options)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry demo: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn bench(options: ferry::lab::bench::BenchOptions) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(ferry::lab::bench::run(&options)) {
        Ok(report) => {
            if options.json {
                match serde_json::to_string(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("ferry bench: cannot encode the results: {error}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", ferry::lab::bench::render_table(&report));
            }
            if report.scenarios.iter().any(|s| s.lost.unwrap_or(0) > 0) {
                eprintln!("ferry bench: some scenario lost messages (see the lost column)");
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ferry bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `ferry completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
    write_stdout(&script, "the completion script")
}

/// `ferry man`: ferry(1) on stdout, or with `--dir` one page per command written there.
fn man(dir: Option<&std::path::Path>) -> ExitCode {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        if let Err(error) = man_page(command).render(&mut page) {
            eprintln!("ferry man: cannot render the man page: {error}");
            return ExitCode::from(2);
        }
        return write_stdout(&page, "the man page");
    };
    if let Err(error) = std::fs::create_dir_all(dir) {
        eprintln!("ferry man: cannot create {}: {error}", dir.display());
        return ExitCode::from(2);
    }
    let mut pages = vec![command.clone()];
    pages.extend(
        command
            .get_subcommands()
            .filter(|c| !c.is_hide_set())
            .cloned(),
    );
    for page in pages {
        let man = man_page(page);
        match man.generate_to(dir) {
            Ok(path) => println!("{}", path.display()),
            Err(error) => {
                eprintln!(
                    "ferry man: cannot write {}: {error}",
                    dir.join(man.get_filename()).display()
                );
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

/// The page of `command`, dated with the build (so two builds of one commit render alike).
fn man_page(command: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(command)
        .date(ferry::build_info::DATE)
        .manual("ferry manual")
}

/// Writes generated text to stdout. A reader that stops early (`ferry man | head`) is not an
/// error; any other write failure is a runtime failure (exit 2).
fn write_stdout(bytes: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry: cannot write {what} to stdout: {error}");
            ExitCode::from(2)
        }
    }
}
