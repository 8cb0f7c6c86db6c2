//! `cargo xtask slurm-up` / `slurm-down`: a one-node Slurm cluster on this machine for the
//! tests of `xlpatch slurm`, with Debian's packages and no systemd.
//!
//! `slurm-up` installs `slurmctld`, `slurmd`, `slurm-client` and `munge` with apt-get when they
//! are missing (as root), writes a munge key, `slurm.conf` and `cgroup.conf` into a state
//! directory in the temporary directory, starts `munged`, `slurmctld` and `slurmd` on it (on
//! their own ports and munge socket, so a system Slurm is left alone), and waits until
//! `sinfo` shows the node idle. Clients find the cluster through `SLURM_CONF`; the tests
//! read the same path when it is unset. `slurm-down` cancels what is still queued, stops the
//! three daemons by the pids they wrote, and removes the state directory.
//!
//! The cluster: `SlurmctldHost=localhost`, one node of 2 CPUs, one partition `debug`,
//! `select/cons_tres` on cores, `proctrack/linuxproc`, `task/none`, accounting off, and
//! `MaxArraySize=5` so that a test study of 7 tasks is split into two arrays.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The state directory (`xlpatch-slurm` in the temporary directory; the tests look there).
pub(crate) fn state_dir() -> PathBuf {
    std::env::temp_dir().join("xlpatch-slurm")
}

/// The cluster's `slurm.conf` (what `SLURM_CONF` must name).
pub(crate) fn conf_path() -> PathBuf {
    state_dir().join("slurm.conf")
}

const DAEMONS: [&str; 3] = ["slurmd", "slurmctld", "munged"];

/// Finds `name` on PATH or in the sbin directories (where Debian puts the daemons).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Debian's packages when a program is missing.
fn ensure_packages() -> Result<()> {
    let needed = ["slurmctld", "slurmd", "sbatch", "munged"];
    if needed.iter().all(|n| find(n).is_some()) {
        return Ok(());
    }
    let install = "apt-get update && apt-get install -y slurmctld slurmd slurm-client munge";
    if !is_root() || find("apt-get").is_none() {
        bail!("Slurm or munge is not installed; run `{install}` as root (Debian 12), then again");
    }
    println!("slurm-up: installing slurmctld, slurmd, slurm-client and munge with apt-get");
    crate::run(Command::new("apt-get").args(["update", "-qq"]))?;
    crate::run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "slurmctld",
                "slurmd",
                "slurm-client",
                "munge",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if let Some(n) = needed.iter().find(|n| find(n).is_none()) {
        bail!("{n} is still missing after `{install}`");
    }
    Ok(())
}

fn slurm_conf(state: &Path) -> String {
    let s = state.display();
    format!(
        "# A one-node test cluster written by `cargo xtask slurm-up`.
ClusterName=xlpatch
SlurmctldHost=localhost
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={s}/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd.log
ReturnToService=2
KillWait=5
MaxArraySize=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"
    )
}

/// The last lines of every log, for a failure message.
fn logs(state: &Path) -> String {
    let mut out = String::new();
    for name in ["munged.log", "slurmctld.log", "slurmd.log"] {
        let path = state.join("log").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("--- {}\n", path.display()));
        for l in &lines[lines.len().saturating_sub(10)..] {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `cargo xtask slurm-up`; returns the `slurm.conf` to put in `SLURM_CONF`.
pub(crate) fn up() -> Result<PathBuf> {
    ensure_packages()?;
    let state = state_dir();
    if state.exists() {
        down()?;
    }
    for sub in ["state", "spool", "log"] {
        std::fs::create_dir_all(state.join(sub))
            .with_context(|| format!("cannot create {}", state.join(sub).display()))?;
    }
    let key = state.join("munge.key");
    let mut bytes = vec![0u8; 1024];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the munge key")?;
    std::fs::write(&key, &bytes)?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400))?;
    let conf = conf_path();
    std::fs::write(&conf, slurm_conf(&state))?;
    // slurmd reads cgroup.conf beside slurm.conf; the tracking plugins above need no cgroups.
    std::fs::write(state.join("cgroup.conf"), "CgroupPlugin=autodetect\n")?;
    let s = |name: &str| state.join(name);
    let started = (|| -> Result<()> {
        crate::run(
            Command::new(find("munged").context("munged")?)
                .arg("--force")
                .arg(format!("--socket={}", s("munge.socket").display()))
                .arg(format!("--key-file={}", key.display()))
                .arg(format!("--pid-file={}", s("munged.pid").display()))
                .arg(format!("--log-file={}", s("log/munged.log").display()))
                .arg(format!("--seed-file={}", s("munged.seed").display())),
        )?;
        crate::run(
            Command::new(find("slurmctld").context("slurmctld")?)
                .arg("-f")
                .arg(&conf)
                .env("SLURM_CONF", &conf),
        )?;
        crate::run(
            Command::new(find("slurmd").context("slurmd")?)
                .arg("-f")
                .arg(&conf)
                .args(["-N", "localhost"])
                .env("SLURM_CONF", &conf),
        )?;
        let start = Instant::now();
        loop {
            let out = Command::new("sinfo")
                .args(["-h", "-o", "%t"])
                .env("SLURM_CONF", &conf)
                .stderr(Stdio::null())
                .output()?;
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "idle" {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("the node is not idle after 60 s (sinfo: {state:?})");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })();
    if let Err(e) = started {
        let logs = logs(&state);
        let _ = down();
        bail!("slurm-up failed: {e:#}\n{logs}");
    }
    println!(
        "slurm-up: one-node cluster idle; export SLURM_CONF={}",
        conf.display()
    );
    Ok(conf)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `cargo xtask slurm-down`: stops what `up` started (by the pids it wrote) and removes the
/// state directory. Nothing to do when it is not up.
pub(crate) fn down() -> Result<()> {
    let state = state_dir();
    if !state.exists() {
        return Ok(());
    }
    let conf = conf_path();
    // Jobs still queued on the test cluster (all of them are the tests').
    if let Ok(out) = Command::new("squeue")
        .args(["-h", "-o", "%A"])
        .env("SLURM_CONF", &conf)
        .stderr(Stdio::null())
        .output()
    {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("scancel")
                .args(&ids)
                .env("SLURM_CONF", &conf)
                .status();
        }
    }
    for daemon in DAEMONS {
        let pid_file = state.join(format!("{daemon}.pid"));
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !alive(pid) {
            continue;
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let start = Instant::now();
        while alive(pid) && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    std::fs::remove_dir_all(&state)
        .with_context(|| format!("cannot remove {}", state.display()))?;
    println!("slurm-down: stopped");
    Ok(())
}

/// Runs `cmd` (the test suite) with the cluster up and `SLURM_CONF` set, and takes the
/// cluster down afterwards whatever the outcome.
pub(crate) fn around(cmd: &mut Command) -> Result<()> {
    let conf = up()?;
    cmd.env("SLURM_CONF", conf);
    let result = crate::run(cmd);
    let stopped = down();
    result.and(stopped)
}
