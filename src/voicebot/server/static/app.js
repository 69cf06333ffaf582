// The voicebot page: connects over WebRTC or WebSocket, shows the conversation, the
// audio levels and each turn's latency. window.voicebot exposes the same facts to tests.

import { ConnectError, Endpoints, WebRTCTransport, WebSocketTransport } from "./transports.js";

const $ = (id) => document.getElementById(id);
const endpoints = new Endpoints(window.location);
const query = new URLSearchParams(window.location.search);

const VOICE_DB = -42; // the microphone counts as speech above this level (dBFS)
const AUDIBLE_DB = -50; // bot audio counts as heard above this level (dBFS)
const METER_FLOOR_DB = -60;
const TICK_MS = 50;
const LABELS = { webrtc: "WebRTC", websocket: "WebSocket" };

// What tests (and the curious, in the console) can read.
const facts = {
  state: "idle",
  transport: null,
  sessionId: null,
  notes: [],
  bot: { peakDb: -Infinity, audibleMs: 0 },
  input: { peakDb: -Infinity },
  turns: [],
};
window.voicebot = facts;

let ctx = null;
let inAnalyser = null;
let botAnalyser = null;
let mic = null;
let transport = null;
let attempt = 0; // bumped by every Connect/Disconnect, so stale async work stops
let retryTimer = null;
let botSpeaking = false;
let lastVoiceAt = 0;
let turn = null;

// --- state and messages ------------------------------------------------------------

function setState(state, status, message = "", bad = false) {
  facts.state = state;
  document.body.dataset.state = state;
  $("status").textContent = status;
  const box = $("message");
  box.hidden = !message;
  box.textContent = message;
  box.classList.toggle("bad", bad);
  const busy = state === "connecting" || state === "loading";
  $("connect").textContent = state === "connected" ? "Disconnect" : busy ? "Cancel" : "Connect";
  $("transport").disabled = busy || state === "connected";
}

function systemLine(text) {
  facts.notes.push(text);
  const line = document.createElement("p");
  line.className = "system";
  line.textContent = text;
  append(line);
}

function append(element) {
  const log = $("conversation");
  const hint = log.querySelector(".hint");
  if (hint) hint.remove();
  log.appendChild(element);
  log.scrollTop = log.scrollHeight;
}

// --- audio -----------------------------------------------------------------------------

function ensureAudio() {
  // Created inside the Connect click: browsers only start audio after a user gesture.
  if (!ctx) {
    ctx = new AudioContext({ latencyHint: "interactive" });
    inAnalyser = new AnalyserNode(ctx, { fftSize: 1024 });
    botAnalyser = new AnalyserNode(ctx, { fftSize: 1024 });
    botAnalyser.connect(ctx.destination);
  }
  ctx.resume();
}

function levelDb(analyser, buffer) {
  analyser.getFloatTimeDomainData(buffer);
  let sum = 0;
  for (const v of buffer) sum += v * v;
  const rms = Math.sqrt(sum / buffer.length);
  return rms > 0 ? 20 * Math.log10(rms) : -Infinity;
}

function meterWidth(db) {
  const fraction = (Math.max(db, METER_FLOOR_DB) - METER_FLOOR_DB) / -METER_FLOOR_DB;
  return `${Math.round(Math.min(1, fraction) * 100)}%`;
}

function tick() {
  if (!ctx) return;
  const buffer = new Float32Array(inAnalyser.fftSize);
  const now = performance.now();
  const inDb = mic ? levelDb(inAnalyser, buffer) : -Infinity;
  const botDb = levelDb(botAnalyser, buffer);
  $("meter-in").style.width = meterWidth(inDb);
  $("meter-bot").style.width = meterWidth(botDb);
  facts.input.peakDb = Math.max(facts.input.peakDb, inDb);
  facts.bot.peakDb = Math.max(facts.bot.peakDb, botDb);
  if (inDb > VOICE_DB) lastVoiceAt = now;
  if (botDb > AUDIBLE_DB) {
    facts.bot.audibleMs += TICK_MS;
    if (turn && turn.speechEndAt && !turn.heardAt && turn.botStartedAt) {
      turn.heardAt = now;
      turn.data.latencyMs = Math.round(now - turn.speechEndAt);
      renderStats(turn);
    }
  }
}
setInterval(tick, TICK_MS);

async function openMic(deviceId) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    const error = new Error("The microphone needs a secure page: open it over HTTPS or on localhost.");
    error.name = "InsecureContext";
    throw error;
  }
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: {
      deviceId: deviceId ? { exact: deviceId } : undefined,
      echoCancellation: true,
      noiseSuppression: true,
      autoGainControl: true,
    },
  });
  const source = ctx.createMediaStreamSource(stream);
  source.connect(inAnalyser);
  return { stream, source };
}

function closeMic(current) {
  if (!current) return;
  current.source.disconnect();
  for (const track of current.stream.getTracks()) track.stop();
}

async function listMics() {
  const select = $("mic");
  const devices = await navigator.mediaDevices.enumerateDevices();
  const wanted = select.value || localStorage.getItem("voicebot.mic") || "";
  select.replaceChildren(new Option("Default microphone", ""));
  for (const device of devices) {
    if (device.kind !== "audioinput" || device.deviceId === "default") continue;
    select.appendChild(new Option(device.label || "Microphone", device.deviceId));
  }
  select.value = [...select.options].some((o) => o.value === wanted) ? wanted : "";
}

function micProblem(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "Microphone access was denied. Allow the microphone for this site in the browser's settings, then press Connect again.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No microphone was found. Plug one in (or choose another), then press Connect again.";
  }
  if (error.name === "NotReadableError") {
    return "The microphone is busy or unavailable (another program may hold it).";
  }
  return error.message || String(error);
}

// --- connecting --------------------------------------------------------------------------

function makeTransport(name) {
  const Kind = name === "webrtc" ? WebRTCTransport : WebSocketTransport;
  return new Kind({
    endpoints,
    ctx,
    onEvent: onServerEvent,
    onBotAudio: (node) => node.connect(botAnalyser),
    onClosed: (why) => {
      transport = null;
      closeMic(mic);
      mic = null;
      setState("error", "Disconnected", why, true);
      systemLine("Connection lost");
    },
  });
}

async function connect() {
  const mine = ++attempt;
  ensureAudio();
  setState("connecting", "Connecting…", "Asking for the microphone…");
  try {
    mic = await openMic($("mic").value);
  } catch (error) {
    if (mine !== attempt) return;
    setState("mic-denied", "No microphone", micProblem(error), true);
    return;
  }
  if (mine !== attempt) {
    closeMic(mic);
    return;
  }
  listMics().catch(() => {});
  await startTransport(mine);
}

async function startTransport(mine) {
  const choice = $("transport").value;
  const order = choice === "auto" ? ["webrtc", "websocket"] : [choice];
  for (let i = 0; i < order.length; i++) {
    const name = order[i];
    const fallbackLeft = i < order.length - 1;
    setState("connecting", "Connecting…", `Connecting over ${LABELS[name]}…`);
    const candidate = makeTransport(name);
    try {
      const ready = await candidate.connect(mic, { timeoutMs: fallbackLeft ? 12000 : 30000 });
      if (mine !== attempt) {
        candidate.close();
        return;
      }
      transport = candidate;
      facts.transport = name;
      facts.sessionId = ready.session_id;
      setState("connected", `Connected · ${LABELS[name]}`);
      systemLine(`Connected over ${LABELS[name]}. Speak now.`);
      return;
    } catch (caught) {
      candidate.close();
      if (mine !== attempt) return;
      const error =
        caught instanceof ConnectError ? caught : new ConnectError("failed", caught.message || String(caught));
      if ((error.kind === "failed" || error.kind === "unsupported") && fallbackLeft) {
        systemLine(`${LABELS[name]} did not connect (${error.message}) Trying ${LABELS[order[i + 1]]}.`);
        continue;
      }
      failed(error, mine);
      return;
    }
  }
}

function failed(error, mine) {
  if (error.kind === "loading") {
    const seconds = Math.max(1, Math.round(error.retryAfterMs / 1000));
    setState(
      "loading",
      "Server loading…",
      `The server is still loading its models. Retrying every ${seconds} s…`,
    );
    retryTimer = setTimeout(() => {
      if (mine === attempt) startTransport(mine);
    }, error.retryAfterMs);
    return;
  }
  closeMic(mic);
  mic = null;
  if (error.kind === "refused") {
    const advice = endpoints.hasCredentials
      ? "The server refused this session link: it may have expired. Ask for a new one."
      : "This server needs a session link from its operator (a URL ending in ?session=…). Open that link instead.";
    setState("refused", "Refused", `${advice} (${error.message})`, true);
  } else if (error.kind === "busy") {
    setState("refused", "Server busy", `The server is at capacity; try again later. (${error.message})`, true);
  } else if (error.kind === "unreachable") {
    setState(
      "unreachable",
      "Unreachable",
      `The server at ${window.location.host} could not be reached. Check that it is running, then press Connect again.`,
      true,
    );
  } else {
    setState("error", "Error", error.message, true);
  }
}

function disconnect() {
  attempt++;
  clearTimeout(retryTimer);
  const wasConnected = transport !== null;
  if (transport) transport.close();
  transport = null;
  closeMic(mic);
  mic = null;
  botSpeaking = false;
  setState("idle", "Not connected");
  if (wasConnected) systemLine("Disconnected");
}

// --- the conversation ------------------------------------------------------------------

function bubble(kind, who) {
  const element = document.createElement("div");
  element.className = `bubble ${kind} pending`;
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who;
  const text = document.createElement("span");
  text.className = "text";
  element.append(label, text);
  return element;
}

function newTurn() {
  // A turn the bot has not answered yet is kept: a cough or a false start adds nothing,
  // and words the server answers later (its turn ended before their transcript arrived,
  // which happens on a busy machine) get their reply in the same turn.
  if (turn && !turn.data.bot) return turn;
  const element = document.createElement("div");
  element.className = "turn";
  const user = bubble("user", "You");
  user.querySelector(".text").textContent = "…";
  element.appendChild(user);
  append(element);
  turn = { element, user, bot: null, stats: null, interim: "", data: { user: "", bot: "", interrupted: false, latencyMs: null, stages: {} } };
  facts.turns.push(turn.data);
  return turn;
}

function joinText(left, right) {
  if (!left) return right.trim();
  return /^[,.;:!?']/.test(right.trim()) ? left + right.trim() : `${left} ${right.trim()}`;
}

function renderUser(current) {
  const text = [current.data.user, current.interim].filter(Boolean).join(" ");
  current.user.querySelector(".text").textContent = text || "…";
  current.user.classList.toggle("pending", !current.data.user);
}

function botBubble(current) {
  if (!current.bot) {
    current.bot = bubble("bot", "Bot");
    current.bot.classList.remove("pending");
    current.element.appendChild(current.bot);
    current.stats = document.createElement("div");
    current.stats.className = "stats";
    current.element.appendChild(current.stats);
  }
  return current.bot;
}

function renderStats(current) {
  if (!current.stats) return;
  const parts = [];
  if (current.data.latencyMs !== null) parts.push(`heard after ${(current.data.latencyMs / 1000).toFixed(2)} s`);
  const stages = current.data.stages;
  if (stages.stt !== undefined) parts.push(`STT ${Math.round(stages.stt)} ms`);
  if (stages.llm !== undefined) parts.push(`LLM first token ${Math.round(stages.llm)} ms`);
  if (stages.tts !== undefined) parts.push(`TTS first audio ${Math.round(stages.tts)} ms`);
  current.stats.textContent = parts.join(" · ");
}

function markInterrupted(current) {
  if (!current || !current.bot || current.data.interrupted) return;
  current.data.interrupted = true;
  current.bot.classList.add("interrupted");
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.textContent = "interrupted";
  current.bot.querySelector(".who").appendChild(badge);
}

function onServerEvent(event) {
  switch (event.type) {
    case "ready":
      facts.sessionId = event.session_id;
      // A new session starts a new turn; an empty one is still reused.
      if (turn && (turn.data.user || turn.data.bot)) turn = null;
      break;
    case "user_started_speaking":
      if (botSpeaking) {
        markInterrupted(turn);
        if (transport) transport.interrupt();
      }
      newTurn();
      break;
    case "transcript": {
      const current = turn && !turn.data.bot ? turn : newTurn();
      if (event.final) {
        current.data.user = joinText(current.data.user, event.text);
        current.interim = "";
      } else {
        current.interim = event.text;
      }
      renderUser(current);
      break;
    }
    case "user_stopped_speaking":
      if (turn) turn.speechEndAt = lastVoiceAt || performance.now();
      break;
    case "bot_started_speaking":
      botSpeaking = true;
      if (turn && !turn.botStartedAt) turn.botStartedAt = performance.now();
      break;
    case "bot_stopped_speaking":
      botSpeaking = false;
      break;
    case "bot_text": {
      const current = turn || newTurn();
      current.data.bot = joinText(current.data.bot, event.text);
      botBubble(current).querySelector(".text").textContent = current.data.bot;
      $("conversation").scrollTop = $("conversation").scrollHeight;
      break;
    }
    case "metrics": {
      if (!turn) break;
      const stages = turn.data.stages;
      const value = event.stage === "stt" ? event.processing_ms : event.ttfb_ms;
      if (value !== undefined && stages[event.stage] === undefined) stages[event.stage] = value;
      renderStats(turn);
      break;
    }
    case "error":
      systemLine(`Server error (${event.code}): ${event.message}`);
      break;
    default:
      break;
  }
}

// --- controls ------------------------------------------------------------------------------

$("connect").addEventListener("click", () => {
  if (facts.state === "connected" || facts.state === "connecting" || facts.state === "loading") {
    disconnect();
  } else {
    connect();
  }
});

$("mic").addEventListener("change", async () => {
  localStorage.setItem("voicebot.mic", $("mic").value);
  if (!transport || !mic) return;
  try {
    const next = await openMic($("mic").value);
    await transport.setMic(next);
    closeMic(mic);
    mic = next;
  } catch (error) {
    systemLine(micProblem(error));
  }
});

$("transport").addEventListener("change", () => {
  localStorage.setItem("voicebot.transport", $("transport").value);
});

const chosen = query.get("transport") || localStorage.getItem("voicebot.transport");
if (chosen && LABELS[chosen]) $("transport").value = chosen;
setState("idle", "Not connected");
