// The signalling socket: hello with the join token, automatic reconnection with backoff.
//
// Events: "status" {state: "connecting"|"open"|"retry", inMs}, "message" (every server
// message), "fatal" {code, title, message} (link invalid, visit over), "bye" {reason}.

const FINAL_CODES = new Set([4000, 4001, 4002, 4003, 4404, 4410, 4403]);
const PING_MS = 20000;

function randomId(bytes = 12) {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...raw)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class Signalling extends EventTarget {
  constructor({ path, token, lang }) {
    super();
    this.path = path;
    this.token = token;
    this.lang = lang;
    // One id per page load: the server tells peers when it changes (page reloaded), so they
    // rebuild their connection to us instead of waiting for a dead one.
    this.session = randomId();
    this.ws = null;
    this.attempt = 0;
    this.final = false;
    this.retryTimer = null;
    this.pingTimer = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  connect() {
    if (this.final) return;
    clearTimeout(this.retryTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}${this.path}`);
    this.ws = ws;
    this.emit("status", { state: "connecting", attempt: this.attempt });
    ws.onopen = () => {
      const hello = { type: "hello", token: this.token, session: this.session, lang: this.lang };
      if (this.devices) hello.devices = this.devices;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg.type === "welcome") {
        this.attempt = 0;
        this.emit("status", { state: "open" });
        clearInterval(this.pingTimer);
        this.pingTimer = setInterval(() => this.send({ type: "ping", t: Date.now() }), PING_MS);
      } else if (msg.type === "bye") {
        this.final = true;
        this.emit("bye", msg);
      } else if (msg.type === "error" && msg.fatal) {
        this.final = true;
        this.emit("fatal", msg);
      }
      this.emit("message", msg);
    };
    ws.onclose = (event) => {
      clearInterval(this.pingTimer);
      if (this.ws !== ws) return;
      if (this.final || FINAL_CODES.has(event.code)) {
        this.final = true;
        return;
      }
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    // 0.5 s, 1 s, 2 s … up to 15 s, with jitter so a restarted server is not stampeded.
    const base = Math.min(15000, 500 * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.emit("status", { state: "retry", inMs: delay });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Send a message now; false if the socket is not open (the caller may retry later). */
  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  /** Leave for good: tell the server, then stop reconnecting. */
  leave() {
    this.send({ type: "leave" });
    this.final = true;
  }

  close() {
    this.final = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000);
  }
}
