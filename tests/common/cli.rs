//! A builder for one run of the real `sitec` binary in a temporary folder
//! (after casey/just's test builder): write files, run, compare exact
//! output and exit status, run again in the same folder.

use std::process::{Command, Stdio};

pub struct Test {
    dir: tempfile::TempDir,
    args: Vec<String>,
    stdin: Option<String>,
}

pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub dir: tempfile::TempDir,
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
            stdin: None,
        }
    }

    /// Writes `text` to `name` in the folder (making its parents).
    pub fn file(self, name: &str, text: &str) -> Test {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create folder");
        }
        std::fs::write(path, text).expect("write file");
        self
    }

    /// Writes `bytes`, which need not be text, to `name` in the folder.
    pub fn bytes(self, name: &str, bytes: &[u8]) -> Test {
        std::fs::write(self.dir.path().join(name), bytes).expect("write file");
        self
    }

    /// Sets the permission bits of `name` in the folder.
    pub fn mode(self, name: &str, mode: u32) -> Test {
        use std::os::unix::fs::PermissionsExt;
        let permissions = std::fs::Permissions::from_mode(mode);
        std::fs::set_permissions(self.dir.path().join(name), permissions).expect("chmod");
        self
    }

    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn stdin(mut self, text: &str) -> Test {
        self.stdin = Some(text.to_string());
        self
    }

    pub fn run(self) -> Outcome {
        self.run_with(Stdio::piped())
    }

    /// Runs with its standard output a pipe whose reader has already gone
    /// (as `sitec ... | head` once head has what it wanted): the first
    /// write meets a closed pipe, whatever the output's size.
    pub fn run_into_a_closed_reader(self) -> Outcome {
        let (reader, writer) = rustix::pipe::pipe().expect("a pipe");
        drop(reader);
        self.run_with(Stdio::from(writer))
    }

    fn run_with(self, stdout: Stdio) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sitec"))
            .args(&self.args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("sitec runs");
        if let Some(text) = &self.stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let output = child.wait_with_output().expect("sitec finishes");
        Outcome {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            status: output.status.code().unwrap_or(-1),
            signal: output.status.signal(),
            dir: self.dir,
        }
    }
}

impl Outcome {
    /// A file the run left in the folder.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).expect("file exists")
    }

    /// The next run, in the same folder.
    pub fn again(self) -> Test {
        Test {
            dir: self.dir,
            args: Vec::new(),
            stdin: None,
        }
    }
}
