"""The guards both framework integrations share (lstsd.integrations._common.MethodDriver), read from
what each method declares, tested without a framework."""

from __future__ import annotations

import pytest
import torch

from lstsd.integrations._common import MethodDriver
from lstsd.methods import Method, available_methods, create_method
from method_settings import settings_of
from toy import C, N, make_data, make_model


def driver_of(name: str) -> MethodDriver:
    method = create_method(name, num_samples=N, num_classes=C, **settings_of(name))
    return MethodDriver(method, where="Framework", fix="resume with FIX", index_fix="give INDICES",
                        inputs_fix="give INPUTS")


@pytest.mark.parametrize("name", available_methods())
def test_sharded_strategies_are_refused_for_methods_that_copy_or_run_the_network(name: str):
    driver = driver_of(name)
    driver.refuse_sharded(None)                  # not sharded: always fine
    method: Method = driver.method
    if method.copies_network or method.needs_model_inputs:
        with pytest.raises(ValueError, match="Framework: .*FSDP shards"):
            driver.refuse_sharded("FSDP")
    else:
        driver.refuse_sharded("FSDP")


@pytest.mark.parametrize("name", available_methods())
def test_a_loss_call_is_refused_without_what_the_method_declares_it_needs(name: str):
    driver = driver_of(name)
    with pytest.raises(RuntimeError, match="no epoch is open"):
        driver.check_loss_call(torch.arange(2), torch.zeros(2, 4))
    driver.set_up(make_model(), epochs=4, batches=3, accumulation=1, device="cpu")
    driver.begin(0, make_model())
    driver.check_loss_call(torch.arange(2), torch.zeros(2, 4))           # everything given
    if driver.method.needs_indices:
        with pytest.raises(ValueError, match="needs each sample's index: give INDICES"):
            driver.check_loss_call(None, torch.zeros(2, 4))
    else:
        driver.check_loss_call(None, torch.zeros(2, 4))
    if driver.method.needs_model_inputs:
        with pytest.raises(ValueError, match="give INPUTS"):
            driver.check_loss_call(torch.arange(2), None)
    else:
        driver.check_loss_call(torch.arange(2), None)


def test_epochs_out_of_order_are_refused_with_the_framework_s_fix():
    driver = driver_of("lstsd")
    model = make_model()
    driver.set_up(model, epochs=4, batches=3, accumulation=1, device="cpu")
    with pytest.raises(RuntimeError, match="Framework: .*no history.*resume with FIX"):
        driver.begin(2, model)
    driver.begin(0, model)
    with pytest.raises(RuntimeError, match="Framework: .*epoch 0 is still open"):
        driver.begin(1, model)
    driver.end(model)
    with pytest.raises(RuntimeError, match="Framework: .*trained 1 epochs.*resume with FIX"):
        driver.begin(3, model)


def test_the_data_set_size_must_be_the_methods():
    driver = driver_of("vanilla")
    driver.check_dataset_size(N)
    driver.check_dataset_size(None)              # unknown (an iterable data set): nothing to check
    with pytest.raises(ValueError, match=f"num_samples={N} but the training set has {N + 1} samples"):
        driver.check_dataset_size(N + 1)


@pytest.mark.parametrize("name", available_methods())
def test_the_method_s_own_lr_schedule_replaces_the_user_s_with_a_warning(name: str):
    driver = driver_of(name)
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1)
    if not driver.method.schedules_lr:
        assert driver.lr_schedule(opt, epochs=4, batches=3, accumulation=1, replaces="yours") is None
        return
    with pytest.warns(UserWarning, match="sets its own LR schedule.*yours is not used"):
        assert driver.lr_schedule(opt, epochs=4, batches=3, accumulation=1, replaces="yours") is not None
    with pytest.raises(ValueError, match="number of batches per epoch"):
        driver.lr_schedule(opt, epochs=4, batches=None, accumulation=1)


def test_set_up_runs_the_method_s_setup_once_and_applies_a_stashed_state():
    driver = driver_of("lstsd")
    model = make_model()
    x, y = make_data()
    driver.set_up(model, epochs=4, batches=3, accumulation=1, device="cpu")
    driver.begin(0, model)
    driver.method.loss(model(x[:4]), y[:4], torch.arange(4))
    state = driver.state_dict()                  # written while epoch 0 is open
    fresh = driver_of("lstsd")
    fresh.stash(state)
    fresh.set_up(model, epochs=4, batches=3, accumulation=1, device="cpu")
    assert fresh.method.short_term_bank.recorded[:4].all() and fresh.reopen == 0
    fresh.set_up(model, epochs=4, batches=3, accumulation=1, device="cpu")   # a second fit: no second setup
    fresh.begin(1, model)                        # the framework resumes at the next epoch: 0 is closed first
    assert fresh.method.epoch == 1 and fresh.method.next_epoch == 1
