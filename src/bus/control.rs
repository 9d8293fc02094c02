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
        let mut frames = incoming.frames;
        let body = frames.pop().filter(|_| !frames.is_empty())?;
        let peer = incoming.peer?;
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
            responder: Responder {
                envelope: frames,
                id,
                outbox: outbox.clone(),
            },
        })
    }

    /// The op the request names.
    pub fn op(&self) -> Option<&str> {
        self.body.as_ref().ok()?.get("op")?.as_str()
    }
}

impl Responder {
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
/// Blocking, for the CLI's thread; one client per agent.
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
        let bus = Bus::new(operator.clone())?;
        let socket = bus.connect(Kind::Ask, endpoint, agent)?;
        Ok(Client {
            socket,
            endpoint: endpoint.to_string(),
            next_id: 1,
            _bus: bus,
        })
    }

    /// Sends `request` (an object; its `id` is set here) and returns the
    /// first answer to it, or an error once `timeout` has passed (the
    /// agent is down, unreachable, or does not know this operator's key).
    pub fn ask(&mut self, request: &Value, timeout: Duration) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = request.clone();
        let map = request
            .as_object_mut()
            .ok_or("a control request is a JSON object")?;
        map.insert("id".into(), json!(id));
        let deadline = Instant::now() + timeout;
        let late = || format!("no answer from {} within {timeout:?}", self.endpoint);
        self.socket
            .send(request.to_string().as_bytes(), zmq::DONTWAIT)
            .map_err(|e| format!("cannot send to {}: {e}", self.endpoint))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(late());
            }
            let ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX).max(1);
            if self
                .socket
                .poll(zmq::POLLIN, ms)
                .map_err(|e| e.to_string())?
                == 0
            {
                continue;
            }
            let frames = self
                .socket
                .recv_multipart(zmq::DONTWAIT)
                .map_err(|e| e.to_string())?;
            let Some(answer) = frames
                .last()
                .and_then(|f| serde_json::from_slice::<Value>(f).ok())
            else {
                continue;
            };
            // An answer to an earlier request that timed out: not this one's.
            if answer.get("id") == Some(&json!(id)) {
                return Ok(answer);
            }
        }
    }
}
