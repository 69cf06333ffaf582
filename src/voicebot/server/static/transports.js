// The two ways the page carries audio: WebRTC (SmallWebRTC routes, events on the data
// channel) and our WebSocket protocol (/ws, PCM through AudioWorklets). Both deliver the
// same JSON events to onEvent and the bot's audio as an AudioNode to onBotAudio.

export class ConnectError extends Error {
  // kind: loading | refused | busy | unreachable | unsupported | failed
  constructor(kind, message, { retryAfterMs = 2000, status = null } = {}) {
    super(message);
    this.kind = kind;
    this.retryAfterMs = retryAfterMs;
    this.status = status;
  }
}

const FORWARDED_PARAMS = ["session", "token"];

// URLs relative to the page, so the server may sit under a path prefix behind a proxy,
// carrying the operator's session or token parameters (if the page was given any).
export class Endpoints {
  constructor(location) {
    this.base = new URL(".", location.href);
    const given = new URLSearchParams(location.search);
    this.forwarded = new URLSearchParams();
    for (const name of FORWARDED_PARAMS) {
      if (given.get(name)) this.forwarded.set(name, given.get(name));
    }
  }

  get hasCredentials() {
    return [...this.forwarded.keys()].length > 0;
  }

  http(path) {
    const url = new URL(path, this.base);
    for (const [k, v] of this.forwarded) url.searchParams.set(k, v);
    return url.toString();
  }

  ws(path) {
    const url = new URL(this.http(path));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }
}

async function postJSON(url, body) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (_e) {
    throw new ConnectError("unreachable", "The server could not be reached.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (_e) {
    data = null;
  }
  if (response.ok) return data;
  const detail = (data && (data.detail || data.message)) || response.statusText;
  const status = response.status;
  if (status === 503) {
    const after = Number(response.headers.get("Retry-After")) || 2;
    throw new ConnectError("loading", detail, { retryAfterMs: after * 1000, status });
  }
  if (status === 401 || status === 403) throw new ConnectError("refused", detail, { status });
  if (status === 429) throw new ConnectError("busy", detail, { status });
  throw new ConnectError("failed", `${status}: ${detail}`, { status });
}

function waitFor(promise, ms, onTimeout) {
  let timer;
  const timeout = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function iceGatheringDone(pc, ms) {
  // Sending one complete offer keeps the server side simple; on a LAN or loopback the
  // host candidates are gathered in milliseconds, and `ms` bounds the wait elsewhere.
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const finish = () => {
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(finish, ms);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

export class WebRTCTransport {
  constructor({ endpoints, ctx, onEvent, onBotAudio, onClosed }) {
    this.name = "webrtc";
    this.endpoints = endpoints;
    this.ctx = ctx;
    this.onEvent = onEvent;
    this.onBotAudio = onBotAudio;
    this.onClosed = onClosed;
    this.pc = null;
    this.closed = false;
  }

  async connect(mic, { timeoutMs = 20000 } = {}) {
    if (typeof RTCPeerConnection === "undefined") {
      throw new ConnectError("unsupported", "This browser has no WebRTC.");
    }
    const start = await postJSON(this.endpoints.http("start"), { transport: "webrtc" });
    const pc = new RTCPeerConnection();
    this.pc = pc;
    this.sender = pc.addTransceiver(mic.stream.getAudioTracks()[0], {
      direction: "sendrecv",
      streams: [mic.stream],
    }).sender;
    const channel = pc.createDataChannel("chat", { ordered: true });
    this.channel = channel;

    let markReady;
    const ready = new Promise((resolve) => {
      markReady = resolve;
    });
    channel.addEventListener("open", () => {
      // RTVI's handshake, for the server's RTVI processor (Pipecat clients send it too).
      channel.send(
        JSON.stringify({
          label: "rtvi-ai",
          type: "client-ready",
          id: Math.random().toString(36).slice(2),
          data: { version: "1.0.0", about: { library: "voicebot-page" } },
        }),
      );
    });
    channel.addEventListener("message", (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (_e) {
        return;
      }
      if (!data || data.label === "rtvi-ai" || typeof data.type !== "string") return;
      if (data.type === "ready") markReady(data);
      this.onEvent(data);
    });
    pc.addEventListener("track", (event) => {
      const stream = event.streams[0] || new MediaStream([event.track]);
      // Chromium only feeds a remote WebRTC stream into Web Audio while a media element
      // also plays it; the element stays muted and Web Audio does the playing.
      this.sink = new Audio();
      this.sink.muted = true;
      this.sink.srcObject = stream;
      this.sink.play().catch(() => {});
      this.botSource = this.ctx.createMediaStreamSource(stream);
      this.onBotAudio(this.botSource);
    });
    pc.addEventListener("connectionstatechange", () => {
      const state = pc.connectionState;
      if ((state === "failed" || state === "closed") && !this.closed) {
        this.closed = true;
        this.onClosed("The WebRTC connection was lost.");
      }
    });

    await pc.setLocalDescription(await pc.createOffer());
    await iceGatheringDone(pc, 3000);
    const answer = await postJSON(this.endpoints.http(`sessions/${start.sessionId}/api/offer`), {
      sdp: pc.localDescription.sdp,
      type: pc.localDescription.type,
    });
    await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
    return waitFor(
      ready,
      timeoutMs,
      () => new ConnectError("failed", "WebRTC did not connect (no route between browser and server)."),
    );
  }

  async setMic(mic) {
    if (this.sender) await this.sender.replaceTrack(mic.stream.getAudioTracks()[0]);
  }

  interrupt() {
    // The server stops sending; nothing is buffered here beyond the jitter buffer.
  }

  close() {
    this.closed = true;
    if (this.channel) this.channel.close();
    if (this.pc) this.pc.close();
    if (this.botSource) this.botSource.disconnect();
    if (this.sink) this.sink.srcObject = null;
  }
}

const workletsLoaded = new WeakMap();

export class WebSocketTransport {
  constructor({ endpoints, ctx, onEvent, onBotAudio, onClosed }) {
    this.name = "websocket";
    this.endpoints = endpoints;
    this.ctx = ctx;
    this.onEvent = onEvent;
    this.onBotAudio = onBotAudio;
    this.onClosed = onClosed;
    this.ws = null;
    this.ready = false;
    this.closed = false;
  }

  async connect(mic, { timeoutMs = 20000 } = {}) {
    if (!this.ctx.audioWorklet) {
      throw new ConnectError("unsupported", "This browser has no AudioWorklet (HTTPS needed?).");
    }
    if (!workletsLoaded.has(this.ctx)) {
      workletsLoaded.set(this.ctx, this.ctx.audioWorklet.addModule("static/audio-worklet.js"));
    }
    await workletsLoaded.get(this.ctx);
    this.player = new AudioWorkletNode(this.ctx, "voicebot-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    this.capture = new AudioWorkletNode(this.ctx, "voicebot-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    // The capture node must be pulled by the graph to run; it outputs nothing audible.
    this.mute = new GainNode(this.ctx, { gain: 0 });
    this.capture.connect(this.mute).connect(this.ctx.destination);
    this.setMic(mic);
    this.capture.port.onmessage = (message) => {
      if (this.ready && this.ws.readyState === WebSocket.OPEN) this.ws.send(message.data);
    };

    const ws = new WebSocket(this.endpoints.ws("ws"));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    let opened = false;
    let notReady = false;
    return waitFor(
      new Promise((resolve, reject) => {
        ws.addEventListener("open", () => {
          opened = true;
        });
        ws.addEventListener("message", (message) => {
          if (typeof message.data !== "string") {
            this.player.port.postMessage({ type: "audio", data: message.data }, [message.data]);
            return;
          }
          let event;
          try {
            event = JSON.parse(message.data);
          } catch (_e) {
            return;
          }
          if (event.type === "error" && event.code === "not_ready") {
            notReady = true;
            return;
          }
          if (event.type === "ready") {
            this.player.port.postMessage({ type: "rate", rate: event.sample_rate });
            this.onBotAudio(this.player);
            this.ready = true;
            resolve(event);
          }
          this.onEvent(event);
        });
        ws.addEventListener("close", (close) => {
          if (!this.ready) {
            reject(closeError(close, opened, notReady));
          } else if (!this.closed) {
            this.closed = true;
            this.onClosed(`The server closed the connection (${close.code} ${close.reason}).`);
          }
        });
      }),
      timeoutMs,
      () => new ConnectError("failed", "The WebSocket session did not start in time."),
    );
  }

  setMic(mic) {
    if (this.micSource) this.micSource.disconnect(this.capture);
    this.micSource = mic.source;
    this.micSource.connect(this.capture);
  }

  interrupt() {
    if (this.player) this.player.port.postMessage({ type: "flush" });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close(1000, "bye");
    if (this.micSource) this.micSource.disconnect(this.capture);
    for (const node of [this.capture, this.mute, this.player]) if (node) node.disconnect();
  }
}

function closeError(close, opened, notReady) {
  if (notReady) return new ConnectError("loading", "models are still loading");
  const reason = close.reason || `close code ${close.code}`;
  if (close.code === 1008 || close.code === 4401 || close.code === 4403) {
    return new ConnectError("refused", reason);
  }
  if (close.code === 1013 || close.code === 4429) return new ConnectError("busy", reason);
  if (!opened) return new ConnectError("unreachable", "The server could not be reached.");
  return new ConnectError("failed", reason);
}
