"""Training any registered method inside a framework's own loop.

* :mod:`lstsd.integrations.lightning` — PyTorch Lightning (``pip install -e '.[lightning]'`` in a clone):
  ``LSTSDCallback`` drives the epoch hooks and puts the method's state into Lightning's
  checkpoints; ``training_loss(self, logits, y, idx)`` in ``training_step`` gives the loss.
* :mod:`lstsd.integrations.transformers` — the Hugging Face ``Trainer``
  (``pip install -e '.[transformers]'`` in a clone): ``LSTSDTrainer(method="lstsd", method_settings={...})``.

Nothing here is imported by ``import lstsd``: import the submodule you use. Each raises an
``ImportError`` naming the extra to install when its framework is missing. The pitfalls both
integrations guard against are listed in each submodule's docstring; what they share (set-up,
guards, checkpoints written while an epoch is open) is :class:`lstsd.integrations._common.MethodDriver`.
"""
