//! The operating system's limits on connections, raised where possible and
//! explained where not.

use std::io;

use anyhow::bail;
use rlimit::Resource;

/// File descriptors needed beyond one per connection: the runtime's own,
/// stdio, the JSON file.
const SPARE_FILES: u64 = 64;

/// Raises the open-file limit to the hard limit, since the usual soft limit
/// of 1024 would stop a run at about a thousand connections; fails with
/// advice when even the hard limit is below what `connections` need.
pub fn raise_open_files(connections: u64) -> anyhow::Result<()> {
    let needed = connections + SPARE_FILES;
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE)?;
    let now = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(soft);
    if now < needed {
        bail!(
            "{connections} connections need about {needed} open files, but the OS allows \
             this process {now} (hard limit {hard}); raise the hard limit (as root, \
             `ulimit -Hn {needed}`; for a service, LimitNOFILE=) or use fewer connections"
        );
    }
    Ok(())
}

/// Explains a failed connect in terms of the limit that was hit, when it
/// was a limit.
pub fn explain_connect_error(error: &anyhow::Error) -> String {
    let os_error = error
        .chain()
        .find_map(|e| e.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error);
    let advice = match os_error {
        Some(libc::EMFILE) => {
            "; this process has no file descriptor left: raise `ulimit -n` or use fewer connections"
        }
        Some(libc::ENFILE) => "; the whole system has run out of file descriptors (fs.file-max)",
        Some(libc::EADDRNOTAVAIL) => {
            "; no local port left for another connection to this address: widen \
             net.ipv4.ip_local_port_range or use fewer connections"
        }
        _ => "",
    };
    format!("{error:#}{advice}")
}
