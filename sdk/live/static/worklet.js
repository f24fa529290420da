// AudioWorklet: the input's first channel as 16-bit PCM chunks of `chunkSamples`, posted
// (transferred) to the page, which sends each chunk as one binary WebSocket message.
class PcmSender extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = options.processorOptions.chunkSamples;
    this.buffer = new Int16Array(this.size);
    this.count = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const v = Math.max(-1, Math.min(1, channel[i]));
        this.buffer[this.count++] = v < 0 ? v * 32768 : v * 32767;
        if (this.count === this.size) {
          this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
          this.buffer = new Int16Array(this.size);
          this.count = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm-sender", PcmSender);
