"""FrameProcessors and text aggregators that sit between the stages: history, filler, clauses."""
