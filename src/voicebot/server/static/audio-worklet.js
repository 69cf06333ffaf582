// AudioWorklet processors for the WebSocket transport: microphone capture as PCM16 at
// 16 kHz, and playback of the bot's PCM16 at the server's sample rate. Both resample
// between the AudioContext's own rate and the wire rate.

const CAPTURE_RATE = 16000;
const CHUNK_SAMPLES = 320; // 20 ms at 16 kHz, the protocol's suggested message size

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / CAPTURE_RATE; // input samples per output sample
    this.pos = 0; // fractional read position in the pending input
    this.pending = new Float32Array(0);
    this.out = new Int16Array(CHUNK_SAMPLES);
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0 && input[0].length > 0) {
      const merged = new Float32Array(this.pending.length + input[0].length);
      merged.set(this.pending);
      merged.set(input[0], this.pending.length);
      // Box filter over each output sample's span of input: a cheap low-pass that keeps
      // speech intelligible without aliasing much when going down to 16 kHz.
      while (this.pos + this.step <= merged.length) {
        const start = Math.floor(this.pos);
        const end = Math.floor(this.pos + this.step);
        let sum = 0;
        for (let i = start; i < end; i++) sum += merged[i];
        const value = end > start ? sum / (end - start) : merged[start];
        const clipped = Math.max(-1, Math.min(1, value));
        this.out[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
        if (this.filled === CHUNK_SAMPLES) {
          const chunk = this.out.slice();
          this.port.postMessage(chunk.buffer, [chunk.buffer]);
          this.filled = 0;
        }
        this.pos += this.step;
      }
      const keep = Math.floor(this.pos);
      this.pending = merged.slice(keep);
      this.pos -= keep;
    }
    return true;
  }
}

class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // Float32Array chunks at the wire rate
    this.offset = 0; // fractional read position in queue[0]
    this.step = 1; // wire samples per output sample
    this.port.onmessage = (event) => {
      const message = event.data;
      if (message.type === "rate") {
        this.step = message.rate / sampleRate;
      } else if (message.type === "audio") {
        const pcm = new Int16Array(message.data);
        const samples = new Float32Array(pcm.length);
        for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
        this.queue.push(samples);
      } else if (message.type === "flush") {
        this.queue = [];
        this.offset = 0;
      }
    };
  }

  sampleAt(index) {
    // The wire sample `index` positions past the read head, across queued chunks.
    let i = index;
    for (const chunk of this.queue) {
      if (i < chunk.length) return chunk[i];
      i -= chunk.length;
    }
    return null;
  }

  process(_inputs, outputs) {
    const output = outputs[0][0];
    for (let n = 0; n < output.length; n++) {
      if (this.queue.length === 0) {
        output[n] = 0;
        continue;
      }
      const base = Math.floor(this.offset);
      const frac = this.offset - base;
      const a = this.sampleAt(base);
      const b = this.sampleAt(base + 1);
      output[n] = a === null ? 0 : b === null ? a : a + (b - a) * frac;
      this.offset += this.step;
      while (this.queue.length > 0 && this.offset >= this.queue[0].length) {
        this.offset -= this.queue[0].length;
        this.queue.shift();
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(output);
    return true;
  }
}

registerProcessor("voicebot-capture", CaptureProcessor);
registerProcessor("voicebot-player", PlayerProcessor);
