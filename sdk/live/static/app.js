"use strict";
// gesturert live page: microphone or a file -> protocol v1 (docs/protocol.md) at /ws ->
// skeleton on a canvas, drawn with what the server's `ready` message says (bones, groups,
// colours, line widths: sdk/render.py's look). Plain JavaScript, no build step.
// `?autostart=mic` starts the microphone at load (used by the headless browser test).

const PROTOCOL = 1;
const SAMPLE_RATE = 16000;      // asked of the AudioContext; the browser resamples the mic
const CHUNK_MS = 20;            // one binary message per 20 ms of audio
const MAX_BUFFERED = 256 * 1024; // WebSocket send backlog (bytes) above which audio is dropped
const FPS_WINDOW_MS = 2000;

const canvas = document.getElementById("canvas");
const ctx2d = canvas.getContext("2d");
const statsEl = document.getElementById("stats");
const errorEl = document.getElementById("error");
const micButton = document.getElementById("mic");
const fileInput = document.getElementById("file");
const stopButton = document.getElementById("stop");

// Read by tests/test_live_browser.py.
const live = window.__live = {
  state: "idle", framesReceived: 0, framesDrawn: 0, fps: 0, latencyP50: null,
  latencyP95: null, audioSecondsSent: 0, audioDropped: 0, error: null, end: null,
};

let ws = null, audioCtx = null, mediaStream = null, source = null;
let ready = null, latest = null, rate = SAMPLE_RATE;
let sends = [];           // [samples sent so far, send time] per chunk, oldest first
let samplesSent = 0, endSentAt = null;
let receiveTimes = [], latencies = [];
let box = null;           // running bounding box of all joints seen: fit like fit_to_canvas

function rgb(c) { return `rgb(${c[0]},${c[1]},${c[2]})`; }

function showError(text) {
  live.error = String(text);
  errorEl.textContent = live.error;
}

function percentile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function resetStats() {
  Object.assign(live, { framesReceived: 0, framesDrawn: 0, fps: 0, latencyP50: null,
    latencyP95: null, audioSecondsSent: 0, audioDropped: 0, error: null, end: null });
  errorEl.textContent = "";
  sends = []; samplesSent = 0; endSentAt = null; receiveTimes = []; latencies = [];
  latest = null; box = null;
}

function connect() {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify({
      type: "start", protocol: PROTOCOL, sample_rate: rate, sample_format: "pcm16",
      channels: 1, seed: 0, frame_format: "binary" }));
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") { onFrames(event.data); return; }
      const message = JSON.parse(event.data);
      if (message.type === "ready") { ready = message; live.state = "streaming"; resolve(); }
      else if (message.type === "end") { live.end = message; live.state = "ended"; }
      else if (message.type === "error") {
        showError(`${message.code}: ${message.message}`);
        reject(new Error(message.message));
      }
    };
    ws.onclose = (event) => {
      if (live.state !== "ended") live.state = `closed (${event.code} ${event.reason})`;
      stopAudio();
      setButtons(false);
      reject(new Error(`connection closed (${event.code})`));
    };
  });
}

function onFrames(buffer) {
  const size = ready.frame_record_bytes, now = performance.now();
  const view = new DataView(buffer);
  for (let offset = 0; offset + size <= buffer.byteLength; offset += size) {
    const index = view.getUint32(offset, true);
    const saliency = view.getFloat32(offset + 8, true);
    const points = new Float32Array(buffer.slice(offset + 12, offset + size)); // x, y per joint
    latest = { index, saliency, points };
    grow(points);
    live.framesReceived++;
    receiveTimes.push(now);
    // speech-to-pose: the chunk holding the frame's last audio sample was sent at `sentAt`
    const last = Math.ceil((index + 1) * rate / ready.fps) - 1;
    while (sends.length && sends[0][0] <= last) sends.shift();
    const sentAt = sends.length ? sends[0][1] : endSentAt;
    if (sentAt !== null) latencies.push(now - sentAt);
  }
  while (receiveTimes.length && receiveTimes[0] < now - FPS_WINDOW_MS) receiveTimes.shift();
  if (latencies.length > 300) latencies.splice(0, latencies.length - 300);
}

function grow(points) {
  for (let i = 0; i < points.length; i += 2) {
    const x = points[i], y = points[i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (box === null) box = [x, y, x, y];
    box = [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)];
  }
}

function draw() {
  requestAnimationFrame(draw);
  if (!ready) return;
  const d = ready.drawing, W = canvas.width, H = canvas.height;
  ctx2d.fillStyle = rgb(d.background);
  ctx2d.fillRect(0, 0, W, H);
  if (!latest || box === null) return;
  // one scale for everything seen so far, 5 % margin, centred (sdk.render.fit_to_canvas)
  const spanX = Math.max(box[2] - box[0], 1e-6), spanY = Math.max(box[3] - box[1], 1e-6);
  const scale = Math.min((W - 1) * 0.9 / spanX, (H - 1) * 0.9 / spanY);
  const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2;
  const px = (x) => (x - cx) * scale + (W - 1) / 2, py = (y) => (y - cy) * scale + (H - 1) / 2;
  const p = latest.points, bones = ready.skeleton.bones;
  ctx2d.lineCap = "round";
  const layers = [null, ...Object.keys(d.group_colors)]; // uncoloured groups first
  for (const group of layers) {
    ctx2d.strokeStyle = rgb(group === null ? d.other_color : d.group_colors[group]);
    for (let b = 0; b < bones.length; b++) {
      const g = d.bone_groups[b];
      if (group === null ? g in d.group_colors : g !== group) continue;
      const [i, j] = bones[b];
      ctx2d.lineWidth = 2 * d.bone_half_widths[b];
      ctx2d.beginPath();
      ctx2d.moveTo(px(p[2 * i]), py(p[2 * i + 1]));
      ctx2d.lineTo(px(p[2 * j]), py(p[2 * j + 1]));
      ctx2d.stroke();
    }
  }
  const bar = Math.max(3, Math.round(H / 60));
  const s = Math.max(0, Math.min(1, latest.saliency));
  ctx2d.fillStyle = rgb(d.saliency_track);
  ctx2d.fillRect(0, H - bar, W, bar);
  ctx2d.fillStyle = rgb(d.saliency_low.map((low, k) => Math.round(low + (d.saliency_high[k] - low) * s)));
  ctx2d.fillRect(0, H - bar, Math.round(s * W), bar);
  live.framesDrawn++;
}

function updateStats() {
  const span = receiveTimes.length > 1 ? receiveTimes[receiveTimes.length - 1] - receiveTimes[0] : 0;
  live.fps = span > 0 ? (receiveTimes.length - 1) / (span / 1000) : 0;
  live.latencyP50 = percentile(latencies, 0.5);
  live.latencyP95 = percentile(latencies, 0.95);
  live.audioSecondsSent = samplesSent / rate;
  const ms = (v) => (v === null ? "-" : `${v.toFixed(0)} ms`);
  statsEl.textContent = [
    `state: ${live.state}${ready ? `  |  backend ${ready.backend}, ${ready.fps} fps, algorithmic latency ${ready.algorithmic_latency_ms.toFixed(0)} ms` : ""}`,
    `frames: ${live.framesReceived}  |  ${live.fps.toFixed(2)} fps  |  speech-to-pose latency p50 ${ms(live.latencyP50)}, p95 ${ms(live.latencyP95)}`,
    `audio sent: ${live.audioSecondsSent.toFixed(1)} s at ${rate} Hz${live.audioDropped ? `, ${live.audioDropped} samples dropped (slow network)` : ""}`,
  ].join("\n");
}

function sendChunk(buffer) {
  if (!ws || ws.readyState !== WebSocket.OPEN || live.state !== "streaming") return;
  if (ws.bufferedAmount > MAX_BUFFERED) { live.audioDropped += buffer.byteLength / 2; return; }
  ws.send(buffer);
  samplesSent += buffer.byteLength / 2;
  sends.push([samplesSent, performance.now()]);
}

async function startAudio(makeSource, audible) {
  resetStats();
  setButtons(true);
  audioCtx = new AudioContext({ sampleRate: SAMPLE_RATE });
  await audioCtx.audioWorklet.addModule("/worklet.js");
  await audioCtx.resume();
  rate = audioCtx.sampleRate;
  await connect();
  const node = new AudioWorkletNode(audioCtx, "pcm-sender",
    { processorOptions: { chunkSamples: Math.round(rate * CHUNK_MS / 1000) } });
  node.port.onmessage = (event) => sendChunk(event.data);
  source = await makeSource(audioCtx);
  source.connect(node);
  const mute = audioCtx.createGain();  // keeps the worklet pulled without sound
  mute.gain.value = 0;
  node.connect(mute).connect(audioCtx.destination);
  if (audible) { source.connect(audioCtx.destination); source.start(); }
}

function startMic() {
  return startAudio(async () => {
    mediaStream = await navigator.mediaDevices.getUserMedia({ audio: {
      channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    return audioCtx.createMediaStreamSource(mediaStream);
  }, false);
}

function startFile(file) {
  return startAudio(async (context) => {
    const decoded = await context.decodeAudioData(await file.arrayBuffer());
    const node = context.createBufferSource();
    node.buffer = decoded;
    node.onended = () => setTimeout(finish, 100); // let the worklet post its last chunk
    return node;
  }, true);
}

function finish() {
  if (ws && ws.readyState === WebSocket.OPEN && live.state === "streaming") {
    endSentAt = performance.now();
    ws.send(JSON.stringify({ type: "end" }));
    live.state = "ending";
  }
  stopAudio();
}

function stopAudio() {
  if (mediaStream) mediaStream.getTracks().forEach((track) => track.stop());
  if (audioCtx) audioCtx.close();
  mediaStream = null; audioCtx = null; source = null;
}

function setButtons(running) {
  micButton.disabled = running;
  fileInput.disabled = running;
  stopButton.disabled = !running;
}

micButton.onclick = () => startMic().catch(showError);
fileInput.onchange = () => { if (fileInput.files.length) startFile(fileInput.files[0]).catch(showError); };
stopButton.onclick = finish;
setInterval(updateStats, 250);
requestAnimationFrame(draw);
if (new URLSearchParams(location.search).get("autostart") === "mic") startMic().catch(showError);
