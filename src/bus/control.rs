//! Control: the request/response protocol between the operator's commands
//! and the agents, both ends of it.
//!
//! A request is one JSON object, `{"op": NAME, "id": N, ...}`, sent by the
//! operator's DEALER (`Client`, CURVE with the operator's key) to an
//! agent's ROUTER (`Kind::Control`, which admits the operator's key only).
//! Each answer is one JSON object; it repeats the request's `id` (so a
//! client can tell the answers to several requests in flight apart) and
//! says `"ok": true` or `"ok": false, "error": TEXT`. An op may answer more
//! than once (a stream: each answer but the last says `"more": true`). On
//! the agent, `Request::from_incoming` splits what arrived into its
//! envelope (the ROUTER's frames that route the answer back: a DEALER's
//! identity, or a REQ's and its empty delimiter), its body and the name its
//! sender was admitted under; its `Responder` sends answers, from any
//! thread or task, without blocking (`Outbox`).

use super::{Bus, Incoming, KeyPair, Kind, Outbox, PublicKey};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The name the operator's key is admitted under on an agent's control socket.
pub const OPERATOR: &str = "operator";

/// One request as an agent receives it.
pub struct Request {
    /// Who sent it: the name its key was admitted under.
    pub peer: String,
    /// The body, parsed; `Err` says why it is not a request.
    pub body: Result<Value, String>,
    pub responder: Responder,
}

/// Sends the answers to one request.
#[derive(Clone)]
pub struct Responder {
    envelope: Vec<Vec<u8>>,
    id: Option<Value>,
    outbox: Outbox,
}

impl Request {
    /// The request in `incoming`, answered through `outbox`; `None` for a
    /// message with no envelope or no admitted sender (a ROUTER always has
    /// both).
    pub fn from_incoming(incoming: Incoming, outbox: &Outbox) -> Option<Request> {
        let (peer, body, responder) = Request::raw(incoming, outbox)?;
        let body: Result<Value, String> = serde_json::from_slice::<Value>(&body)
            .map_err(|e| format!("the request is not JSON ({e}); send e.g. {{\"op\": \"ping\"}}"))
            .and_then(|v| {
                if v.is_object() {
                    Ok(v)
                } else {
                    Err("the request is not a JSON object; send e.g. {\"op\": \"ping\"}".into())
                }
            });
        let id = body.as_ref().ok().and_then(|b| b.get("id")).cloned();
        Some(Request {
            peer,
            body,
            responder: responder.with_id(id),
        })
    }

    /// Like `from_incoming`, for a receiver that parses the body itself
    /// (the log collector, into typed lines without a `Value` between):
    /// the sender's name, the body's bytes, and a responder whose answers
    /// carry no `id` until given one (`Responder::with_id`).
    pub fn raw(incoming: Incoming, outbox: &Outbox) -> Option<(String, Vec<u8>, Responder)> {
        let mut frames = incoming.frames;
        let body = frames.pop().filter(|_| !frames.is_empty())?;
        let peer = incoming.peer?;
        let responder = Responder {
            envelope: frames,
            id: None,
            outbox: outbox.clone(),
        };
        Some((peer, body, responder))
    }

    /// The op the request names.
    pub fn op(&self) -> Option<&str> {
        self.body.as_ref().ok()?.get("op")?.as_str()
    }
}

impl Responder {
    /// The same, its answers repeating `id` (the request's, if it has one).
    pub fn with_id(self, id: Option<Value>) -> Responder {
        Responder { id, ..self }
    }

    /// Sends `answer` (an object), with the request's `id`; false when it
    /// was dropped (the client is gone or does not read).
    pub fn send(&self, mut answer: Value) -> bool {
        if let (Some(id), Some(map)) = (&self.id, answer.as_object_mut()) {
            map.insert("id".into(), id.clone());
        }
        let mut frames = self.envelope.clone();
        frames.push(answer.to_string().into_bytes());
        self.outbox.send(frames)
    }

    /// Sends `{"ok": false, "error": message}`.
    pub fn error(&self, message: &str) -> bool {
        self.send(json!({ "ok": false, "error": message }))
    }
}

/// The operator's end: a DEALER connected to one agent's control socket.
/// Blocking, for the CLI's threads; one client per agent (`ask_all` asks
/// many at once). Several requests may be in flight on one client: each
/// answer names its request's `id`.
pub struct Client {
    socket: zmq::Socket,
    endpoint: String,
    next_id: u64,
    // Keeps the context (and its ZAP thread) for as long as the socket.
    _bus: Bus,
}

impl Client {
    /// Connects (in the background) to the agent at `endpoint`, whose key
    /// is `agent`, as the operator (`operator`'s key).
    pub fn connect(
        endpoint: &str,
        agent: &PublicKey,
        operator: &KeyPair,
    ) -> Result<Client, String> {
        Client::connect_on(&Bus::new(operator.clone())?, endpoint, agent)
    }

    /// Like `connect`, on a bus shared with other clients (one libzmq
    /// context for a whole fleet).
    pub fn connect_on(bus: &Bus, endpoint: &str, agent: &PublicKey) -> Result<Client, String> {
        let socket = bus.connect(Kind::Ask, endpoint, agent)?;
        Ok(Client {
            socket,
            endpoint: endpoint.to_string(),
            next_id: 1,
            _bus: bus.clone(),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends `request` (an object) with a fresh `id`, which it returns; the
    /// answers repeat it.
    pub fn send(&mut self, request: &Value) -> Result<u64, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = request.clone();
        let map = request
            .as_object_mut()
            .ok_or("a control request is a JSON object")?;
        map.insert("id".into(), json!(id));
        self.post(&request)?;
        Ok(id)
    }

    /// Sends `message` as it is: a message to a session already open
    /// (`{"op": "input", "session": ID, ...}`), which gets no answer.
    pub fn post(&mut self, message: &Value) -> Result<(), String> {
        self.socket
            .send(message.to_string().as_bytes(), zmq::DONTWAIT)
            .map_err(|e| format!("cannot send to {}: {e}", self.endpoint))
    }

    /// The next answer to any request, if one comes within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(answer) = self.try_recv()? {
                return Ok(Some(answer));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1);
            match self.socket.poll(zmq::POLLIN, ms) {
                // A signal this process handles (`sitec run` passes Ctrl-C
                // on) interrupted the wait: wait again.
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// An answer that has arrived already, without waiting; a message that
    /// is not a JSON object is skipped.
    fn try_recv(&mut self) -> Result<Option<Value>, String> {
        loop {
            let frames = match self.socket.recv_multipart(zmq::DONTWAIT) {
                Ok(frames) => frames,
                Err(zmq::Error::EAGAIN | zmq::Error::EINTR) => return Ok(None),
                Err(e) => return Err(format!("cannot read from {}: {e}", self.endpoint)),
            };
            let answer = frames
                .last()
                .and_then(|f| serde_json::from_slice::<Value>(f).ok())
                .filter(Value::is_object);
            if answer.is_some() {
                return Ok(answer);
            }
        }
    }

    /// Sends `request` and returns the first answer to it, or an error once
    /// `timeout` has passed (the agent is down, unreachable, or does not
    /// know this operator's key).
    pub fn ask(&mut self, request: &Value, timeout: Duration) -> Result<Value, String> {
        let deadline = Instant::now() + timeout;
        let id = self.send(request)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left)? {
                // An answer to an earlier request that timed out: not this one's.
                Some(answer) if answer.get("id") == Some(&json!(id)) => return Ok(answer),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "no answer from {} within {timeout:?}",
                        self.endpoint
                    ))
                }
            }
        }
    }
}

/// Sends `request` to every client at once and waits for each one's first
/// answer until `timeout`: one result per client, in order (an error for
/// one that did not answer in time).
pub fn ask_all(
    clients: &mut [Client],
    request: &Value,
    timeout: Duration,
) -> Vec<Result<Value, String>> {
    ask_all_until(clients, request, timeout, |_| false)
}

/// `ask_all`, waiting no longer once `settled` says the answers so far
/// (None: none yet from that client) are enough; the clients yet to
/// answer then get an error saying how long they were waited for.
pub fn ask_all_until(
    clients: &mut [Client],
    request: &Value,
    timeout: Duration,
    settled: impl Fn(&[Option<&Value>]) -> bool,
) -> Vec<Result<Value, String>> {
    let asked = Instant::now();
    let deadline = asked + timeout;
    let ids: Vec<Result<u64, String>> = clients.iter_mut().map(|c| c.send(request)).collect();
    let mut answers: Vec<Option<Result<Value, String>>> = (ids.iter())
        .map(|id| id.as_ref().err().map(|e| Err(e.clone())))
        .collect();
    while answers.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let waiting: Vec<usize> = (0..clients.len())
            .filter(|i| answers[*i].is_none())
            .collect();
        let mut items: Vec<zmq::PollItem> = (waiting.iter())
            .map(|i| clients[*i].socket.as_poll_item(zmq::POLLIN))
            .collect();
        let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1);
        if zmq::poll(&mut items, ms).is_err() {
            break;
        }
        let ready: Vec<usize> = (waiting.iter().zip(&items))
            .filter(|(_, item)| item.is_readable())
            .map(|(i, _)| *i)
            .collect();
        drop(items);
        for i in ready {
            let Ok(id) = &ids[i] else { continue };
            loop {
                match clients[i].try_recv() {
                    Ok(Some(answer)) if answer.get("id") == Some(&json!(id)) => {
                        answers[i] = Some(Ok(answer));
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        answers[i] = Some(Err(e));
                        break;
                    }
                }
            }
        }
        let so_far: Vec<Option<&Value>> = (answers.iter())
            .map(|a| a.as_ref().and_then(|a| a.as_ref().ok()))
            .collect();
        if settled(&so_far) {
            break;
        }
    }
    let waited = asked.elapsed().min(timeout);
    (answers.into_iter().zip(clients.iter()))
        .map(|(answer, client)| {
            answer.unwrap_or_else(|| {
                Err(format!(
                    "no answer from {} within {}ms",
                    client.endpoint,
                    waited.as_millis()
                ))
            })
        })
        .collect()
}
