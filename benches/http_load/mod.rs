//! Load for the handler bench: `wrk` (2 threads, 16 connections) when it is on
//! PATH, as the issue measured; otherwise 16 keep-alive connections from this
//! process. Either way every figure is printed as a ratio to the bare
//! actix-web server measured the same way in the same run.

use std::io::Write;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CONNECTIONS: usize = 16;

/// One kind of request: `GET path`, or `POST path` with a JSON body.
#[derive(Clone)]
pub struct Request {
    pub path: String,
    pub json_body: Option<String>,
    pub headers: Vec<(&'static str, &'static str)>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self {
            path: path.into(),
            json_body: None,
            headers: vec![],
        }
    }

    pub fn post_json(path: &str, body: String) -> Self {
        Self {
            path: path.into(),
            json_body: Some(body),
            headers: vec![],
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn bytes(&self, port: u16) -> Vec<u8> {
        let method = if self.json_body.is_some() {
            "POST"
        } else {
            "GET"
        };
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n",
            self.path
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.json_body.as_deref().unwrap_or_default();
        if self.json_body.is_some() {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        [head.as_bytes(), body.as_bytes()].concat()
    }
}

pub enum Loader {
    Wrk,
    InProcess,
}

impl Loader {
    pub fn detect() -> Self {
        let found = std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok();
        if found {
            Loader::Wrk
        } else {
            Loader::InProcess
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Loader::Wrk => "wrk -t2 -c16 (a second process)",
            Loader::InProcess => {
                "16 keep-alive connections from the bench process (wrk not on PATH: `apt-get install wrk` for the issue's method)"
            }
        }
    }

    /// Requests per second that `port` answers `request` with, for `duration`.
    pub async fn requests_per_s(&self, port: u16, request: &Request, duration: Duration) -> f64 {
        match self {
            Loader::Wrk => {
                let (port, request) = (port, request.clone());
                tokio::task::spawn_blocking(move || wrk(port, &request, duration))
                    .await
                    .unwrap()
            }
            Loader::InProcess => in_process(port, request, duration).await,
        }
    }
}

fn wrk(port: u16, request: &Request, duration: Duration) -> f64 {
    let mut script = tempfile_path("wrk", "lua");
    {
        let mut f = std::fs::File::create(&script).unwrap();
        if let Some(body) = &request.json_body {
            writeln!(f, "wrk.method = \"POST\"").unwrap();
            writeln!(f, "wrk.headers[\"Content-Type\"] = \"application/json\"").unwrap();
            writeln!(f, "wrk.body = [==[{body}]==]").unwrap();
        }
        for (name, value) in &request.headers {
            writeln!(f, "wrk.headers[\"{name}\"] = \"{value}\"").unwrap();
        }
    }
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c16", &format!("-d{}s", duration.as_secs().max(1))])
        .arg("-s")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}{}", request.path))
        .output()
        .expect("wrk runs");
    let _ = std::fs::remove_file(&mut script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "{} answered errors under load:\n{text}",
        request.path
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk printed no rate:\n{text}"))
}

fn tempfile_path(stem: &str, ext: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "{stem}-{}-{}.{ext}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

async fn in_process(port: u16, request: &Request, duration: Duration) -> f64 {
    let bytes = std::sync::Arc::new(request.bytes(port));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut answered = 0u64;
                while Instant::now() < deadline {
                    stream.write_all(&bytes).await.unwrap();
                    read_response(&mut stream, &mut buf).await;
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Reads one response (a 2xx with a Content-Length) off a keep-alive connection.
async fn read_response(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).unwrap();
    assert!(head.starts_with("HTTP/1.1 2"), "not a 2xx: {head}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + length);
}
