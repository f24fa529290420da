"""Stream.num_feature_frames_queued and Stream.is_closed: what a server caps and checks."""

from __future__ import annotations

import numpy as np

from sdk import StreamingGenerator
from sdk.demo import DEFAULT_BUNDLE


def test_queued_feature_frames_grow_with_audio_and_shrink_with_steps(
        speech_16k: np.ndarray) -> None:
    with StreamingGenerator(DEFAULT_BUNDLE, backend="onnxruntime-cpu") as gen:
        stream = gen.create_stream()
        assert stream.num_feature_frames_queued == 0 and not stream.is_closed
        stream.accept_waveform(speech_16k[:16000], 16000)
        one_second = stream.num_feature_frames_queued
        # all but the frames whose MFCC window reaches past the audio: about fps per second
        assert gen.fps - 3 <= one_second <= gen.fps
        stream.accept_waveform(speech_16k[16000:32000], 16000)
        assert stream.num_feature_frames_queued == one_second + gen.fps
        gen.step([stream])
        assert stream.num_feature_frames_queued == one_second + gen.fps - gen.chunk_frames
        while gen.is_ready(stream):
            gen.step([stream])
        assert stream.num_feature_frames_queued < gen.chunk_frames
        stream.close()
        assert stream.is_closed
