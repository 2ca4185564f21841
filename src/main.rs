//! `janus`: the command line.

mod chart;
mod cli;
mod table;
mod terminal;

use clap::Parser;
use cli::{BenchArgs, Cli, Command, DemoArgs, RunArgs};
use janus_devices::uart16550::ConsoleOut;
use janus_vmm::demo::{self, DemoOptions};
use janus_vmm::{config, KernelSource, Machine, VmConfig, VmmError};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("janus: {}", cli::one_line(&e));
            return ExitCode::from(janus_vmm::exit_status::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JANUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        // Colours only for a person at a terminal, not in a log file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Demo(args) => demo(args),
        Command::Bench(args) => bench(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("janus: {e}");
            ExitCode::from(janus_vmm::exit_status::of_error(&e))
        }
    }
}

/// What the guest boots: the kernel (`--kernel`, which no firmware may go with), the
/// firmware (`--firmware`; by default SeaBIOS when a disk and no kernel is given, as a PC
/// boots from its disk), or the demo guest (no disk, or `--firmware none`).
fn kernel_source(
    kernel: Option<std::path::PathBuf>,
    firmware: Option<&str>,
    disk: bool,
) -> Result<KernelSource, VmmError> {
    let chosen = firmware.map(config::parse_firmware).transpose()?;
    match (kernel, chosen) {
        (Some(_), Some(Some(_))) => Err(VmmError::Config(
            "--firmware and --kernel: Janus loads a kernel itself (--firmware none); booting one through the firmware is not supported yet".into(),
        )),
        (Some(k), _) => Ok(KernelSource::File(k)),
        (None, Some(Some(f))) => Ok(KernelSource::Firmware(f)),
        (None, Some(None)) => Ok(KernelSource::EmbeddedDemo),
        (None, None) if disk => Ok(KernelSource::Firmware(config::SEABIOS.into())),
        (None, None) => Ok(KernelSource::EmbeddedDemo),
    }
}

fn run(args: RunArgs) -> Result<ExitCode, VmmError> {
    let config = VmConfig {
        engine: args.engine.into(),
        mode: args.mode.into(),
        kernel: kernel_source(
            args.kernel,
            args.firmware.as_deref(),
            args.disk.is_some() || args.cdrom.is_some(),
        )?,
        initramfs: args.initramfs,
        cmdline: args.cmdline,
        memory_bytes: config::parse_memory(&args.memory)?,
        vcpus: config::parse_cpus(&args.cpus)?,
        cpu: args.cpu.into(),
        strict_io: args.strict_io,
        devices: args
            .devices
            .iter()
            .map(|d| config::parse_device(d))
            .collect::<Result<_, _>>()?,
        disk: args.disk.as_deref().map(config::parse_disk).transpose()?,
        cdrom: args.cdrom.as_deref().map(config::parse_cdrom).transpose()?,
        boot: args
            .boot
            .as_deref()
            .map(config::parse_boot)
            .transpose()?
            .unwrap_or_default(),
        net: args.net.as_deref().map(config::parse_net).transpose()?,
    };
    // From here on every thread the VMM starts has the stop signals blocked; one thread takes
    // them (`signals::watch`).
    janus_vmm::signals::block()
        .map_err(|e| VmmError::Host(format!("cannot block signals: {e}")))?;
    let mut machine = Machine::build(&config, ConsoleOut::new(Box::new(std::io::stdout())))?;
    let sel = &machine.selection;
    eprintln!(
        "janus: engine {} ({}), mode {}, cpu {}",
        sel.kind.name(),
        sel.reason,
        machine.mode.name(),
        machine.cpu_model
    );
    if let Some(w) = &sel.warning {
        eprintln!("janus: note: {w}");
    }
    for note in &machine.notes {
        eprintln!("janus: note: {note}");
    }
    let raw = terminal::RawMode::enable();
    let restore = raw.as_ref().map(|r| r.restorer());
    janus_vmm::signals::watch(machine.control(), move || {
        if let Some(r) = &restore {
            r();
        }
    })
    .map_err(|e| VmmError::Host(format!("cannot start the signal thread: {e}")))?;
    if raw.is_some() {
        eprintln!("janus: console attached; Ctrl-A x stops the VM\r");
    }
    janus_vmm::stdin::forward(machine.console_input(), machine.control());
    let report = machine.run();
    if report.outcome == janus_vmm::Outcome::Panic && args.on_panic == cli::OnPanic::Pause {
        eprintln!(
            "janus: the guest panicked; the VM stays paused (Ctrl-A x or a signal ends it)\r"
        );
        machine.wait_while_paused();
    }
    drop(raw);
    if let Err(e) = machine.flush_disks() {
        eprintln!("janus: flushing the disk failed: {e}");
    }
    let kinds: Vec<String> = report
        .exits
        .nonzero()
        .map(|(k, n)| format!("{k} {}", table::thousands(n)))
        .collect();
    // The soft engine counts what it retired: say it, with the rate, next to the exits.
    let retired = report
        .instructions
        .map(|n| {
            let mips = n as f64 / report.wall.as_secs_f64().max(1e-9) / 1e6;
            format!("; {} instructions ({mips:.0} MIPS)", table::thousands(n))
        })
        .unwrap_or_default();
    eprintln!(
        "janus: {} after {}; {} exits ({}){retired}",
        report.outcome,
        table::duration(report.wall.as_nanos() as f64),
        table::thousands(report.exits.total()),
        kinds.join(", ")
    );
    if let Some(x) = &report.exec {
        eprintln!(
            "janus: {}",
            table::exec_line(x, report.instructions.unwrap_or(0))
        );
    }
    // Exits by the device that answered them: the cost of each device in trips out of the
    // guest (a string I/O exit moves up to a page).
    if !report.exits_by_device.is_empty() {
        let by: Vec<String> = report
            .exits_by_device
            .iter()
            .map(|(d, n)| format!("{d} {}", table::thousands(*n)))
            .collect();
        eprintln!("janus: exits by device: {}", by.join(", "));
    }
    // The IDE controller's register accesses and bytes (only if it was used).
    let ide = machine.ide_stats();
    if ide.commands > 0 {
        let n = table::thousands;
        eprintln!(
            "janus: ide: {} commands, {} register accesses ({} task file, {} data port, {} bus master); {} bytes by PIO, {} bytes by DMA; {} cache flushes",
            n(ide.commands),
            n(ide.exits()),
            n(ide.register_exits),
            n(ide.data_exits),
            n(ide.bmdma_exits),
            n(ide.pio_bytes),
            n(ide.dma_bytes),
            n(ide.flushes)
        );
    }
    // The e1000's register accesses and frames (full mode with --net, only if used).
    if let Some(nic) = machine.e1000_stats().filter(|s| s.exits() > 0) {
        let n = table::thousands;
        eprintln!(
            "janus: e1000: {} register accesses ({} MMIO, {} I/O); {} frames out ({} bytes), {} frames in ({} bytes), {} dropped; {} interrupts, {} TSO contexts; {} guest errors",
            n(nic.exits()),
            n(nic.mmio_exits),
            n(nic.io_exits),
            n(nic.tx_frames),
            n(nic.tx_bytes),
            n(nic.rx_frames),
            n(nic.rx_bytes),
            n(nic.dropped),
            n(nic.interrupts),
            n(nic.tso_contexts),
            n(nic.guest_errors)
        );
    }
    for line in machine.para_report() {
        eprintln!("janus: {line}");
    }
    if let janus_vmm::Outcome::Fault(f) = &report.outcome {
        if let Some(state) = &f.state {
            eprintln!("janus: vcpu state: {state}");
        }
    }
    Ok(ExitCode::from(report.outcome.exit_code()))
}

fn demo(args: DemoArgs) -> Result<ExitCode, VmmError> {
    let opts = DemoOptions {
        engine: args.engine.into(),
        compute_iters: args.compute,
        loop_iters: args.loop_iters,
        disk: args
            .disk
            .as_deref()
            .map(config::parse_disk)
            .transpose()?
            .map(|d| d.path),
        ..Default::default()
    };
    let report = demo::run(&opts)?;
    print_report(args.json, &report, table::render);
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn bench(args: BenchArgs) -> Result<ExitCode, VmmError> {
    if let (Some(kernel), Some(initramfs)) = (args.kernel.clone(), args.initramfs.clone()) {
        if args.io {
            return bench_io(args, kernel, initramfs);
        }
        if args.suite {
            return bench_suite(args, kernel, initramfs);
        }
        return bench_linux(args, kernel, initramfs);
    }
    let opts = janus_vmm::bench::BenchOptions {
        engines: args.engines.into_iter().map(Into::into).collect(),
        compute_iters: args.compute,
        loop_iters: args.loop_iters,
        qemu: args.qemu,
    };
    let report = janus_vmm::bench::run(&opts)?;
    print_report(args.json, &report, table::render_bench);
    Ok(ExitCode::SUCCESS)
}

/// Prints a report: one JSON object with `--json`, else its table.
fn print_report<T: serde::Serialize>(json: bool, report: &T, table: impl FnOnce(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        print!("{}", table(report));
    }
}

/// The running janus binary, which the Linux benches start as a child like QEMU.
fn janus_binary() -> Result<std::path::PathBuf, VmmError> {
    std::env::current_exe()
        .map_err(|e| VmmError::Config(format!("janus bench: cannot find the janus binary: {e}")))
}

fn bench_io(
    args: BenchArgs,
    kernel: std::path::PathBuf,
    initramfs: std::path::PathBuf,
) -> Result<ExitCode, VmmError> {
    let janus = janus_binary()?;
    let opts = janus_vmm::bench_io::IoBenchOptions {
        janus,
        qemu: args.qemu,
        kernel,
        initramfs,
        memory_mib: config::parse_memory(&args.memory)? >> 20,
        disk_mib: args.disk_mib,
        pings: 10,
    };
    let report = janus_vmm::bench_io::run(&opts)?;
    print_report(args.json, &report, table::render_bench_io);
    Ok(ExitCode::SUCCESS)
}

fn bench_linux(
    args: BenchArgs,
    kernel: std::path::PathBuf,
    initramfs: std::path::PathBuf,
) -> Result<ExitCode, VmmError> {
    let janus = janus_binary()?;
    let opts = janus_vmm::bench_linux::LinuxBenchOptions {
        janus,
        qemu: args.qemu,
        kernel,
        initramfs,
        memory_mib: config::parse_memory(&args.memory)? >> 20,
    };
    let report = janus_vmm::bench_linux::run(&opts)?;
    print_report(args.json, &report, table::render_bench_linux);
    Ok(ExitCode::SUCCESS)
}

fn bench_suite(
    args: BenchArgs,
    kernel: std::path::PathBuf,
    initramfs: std::path::PathBuf,
) -> Result<ExitCode, VmmError> {
    use janus_vmm::bench_suite;
    let janus = janus_binary()?;
    let opts = bench_suite::SuiteOptions {
        janus,
        qemu: args.qemu,
        bench_dir: args
            .bench_dir
            .unwrap_or_else(|| bench_suite::default_bench_dir(&initramfs)),
        kernel,
        initramfs,
        memory_mib: config::parse_memory(&args.memory)? >> 20,
        scale: args.scale.into(),
        only: args.only,
        cpu: janus_vmm::CpuModel::from(args.cpu).name().to_string(),
        rounds: args.rounds,
    };
    let report = bench_suite::run(&opts)?;
    print_report(args.json, &report, table::render_bench_suite);
    if let Some(path) = &args.svg {
        chart::write_suite_svg(path, &report).map_err(|e| {
            VmmError::Config(format!("janus bench: cannot write {}: {e}", path.display()))
        })?;
    }
    // Loudly, on stderr too, so --json does not hide it.
    for p in &report.problems {
        eprintln!("janus bench: {p}");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "janus bench: FAILED: {} problem(s) above",
            report.problems.len()
        );
        ExitCode::FAILURE
    })
}
