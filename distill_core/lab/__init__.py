"""Back-ends of the pages that are not a paper's procedure (pure functions, no streamlit).

- :mod:`.temperature`: the Temperature page's curves over T (entropy, softmax Jacobian, EBB);
- :mod:`.attack_lab`: one image attacked on several models, with saliency and transfer;
- :mod:`.uploads`: an uploaded or drawn image converted to a model's input;
- :mod:`.tradeoff`: the trade-off table of zoo models and runs;
- :mod:`.sweeps`: sweeps of one knob (tagged runs, trained and measured in turn) and their curves.
"""
