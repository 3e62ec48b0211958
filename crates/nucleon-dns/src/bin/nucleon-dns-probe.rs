//! `nucleon-dns-probe`: resolve a name (and optionally GET a URL) the way a Nucleon
//! service does, without `getaddrinfo`. A diagnostic tool, and the program the strace
//! test watches.
//!
//! ```text
//! nucleon-dns-probe [--nameserver IP[:PORT]]... [--no-hosts] [--getaddrinfo] HOST [URL]
//! ```
//!
//! - `--nameserver`: ask these servers instead of `/etc/resolv.conf`'s.
//! - `--no-hosts`: ignore `/etc/hosts`.
//! - `--getaddrinfo`: resolve HOST with `tokio::net::lookup_host` (glibc) instead, to
//!   compare.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool"
)]

use std::process::ExitCode;

use nucleon_dns::{DnsConfig, HttpClient, HttpClientConfig, Resolver};

struct Args {
    nameservers: Vec<String>,
    hosts: bool,
    getaddrinfo: bool,
    host: String,
    url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut nameservers = Vec::new();
    let mut hosts = true;
    let mut getaddrinfo = false;
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nameserver" => nameservers.push(args.next().ok_or("--nameserver needs a value")?),
            "--no-hosts" => hosts = false,
            "--getaddrinfo" => getaddrinfo = true,
            "-h" | "--help" => return Err(String::new()),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let host = positional.next().ok_or("HOST is missing")?;
    Ok(Args {
        nameservers,
        hosts,
        getaddrinfo,
        host,
        url: positional.next(),
    })
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.getaddrinfo {
        for addr in tokio::net::lookup_host((args.host.as_str(), 0)).await? {
            println!("{}", addr.ip());
        }
        return Ok(());
    }
    let config = DnsConfig {
        nameservers: args.nameservers,
        hosts_file: if args.hosts {
            DnsConfig::default().hosts_file
        } else {
            None
        },
        ..DnsConfig::default()
    };
    let resolver = Resolver::from_config(&config).await?;
    for ip in resolver.lookup_ip(&args.host).await? {
        println!("{ip}");
    }
    if let Some(url) = args.url {
        let client = HttpClient::new(resolver, &HttpClientConfig::default()).await?;
        let response = client.send(client.get(&url)).await?;
        println!("{} {}", response.status().as_u16(), response.text().await?);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("nucleon-dns-probe: {message}");
            }
            eprintln!(
                "usage: nucleon-dns-probe [--nameserver IP[:PORT]]... [--no-hosts] [--getaddrinfo] HOST [URL]"
            );
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nucleon-dns-probe: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nucleon-dns-probe: {error}");
            ExitCode::FAILURE
        }
    }
}
