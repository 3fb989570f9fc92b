"""The local streaming runner (Beam's BundleBasedDirectRunner) made fit for live sources.

Two additions to it, registered through the runner's evaluator registry (``TransformEvaluator
Registry._test_evaluators_overrides``, its extension point) by :func:`install`, which a
streaming run on that runner calls before it starts (and nothing else: a Dataflow job never
imports this module):

* the root transform :class:`beam_pipelines.io.live_sources.LiveRead` is executed by
  ``_RootReadEvaluator``: its ``read(now)``, round after round, as the runner does its own
  Pub/Sub read;
* Two fixes of event-time windows with early firings, in the streaming GroupAlsoByWindow
  evaluator. (1) For a processing-time timer it hands the trigger the *wall-clock* time
  where a watermark is meant, and ``AfterWatermark`` then takes an early firing of any
  window older than the wall clock for its on-time pane. (2) It hands the trigger driver
  the step's *output* watermark where the *input* watermark is meant; with many keys the
  output watermark lags a window that has already fired for some key. Either way a
  record arriving next sets a watermark hold at the window's end that nothing ever
  clears: downstream windows stop closing (only early panes), panes are mislabelled
  ("Watermark moved backwards in time" warnings) and a drain stalls ("Monitor task
  detected a pipeline stall"). Here, as in the Java runners, a processing-time firing is
  judged against the input watermark, and so is lateness.

And two costs per bundle taken off, which on fragments of batches (a bundle per key and
pane) were a third of the run: (3) every bundle of a ParDo round-trips its DoFn through
the pickler, as a test that it pickles (the runner's own splittable-DoFn evaluator skips
it; a pipeline that does not pickle fails at submission anyway); (4) every bundle
re-derives the DoFn's state and timer specs from its method signatures, several times:
here they are derived once per DoFn object.

And (5): the runner does not hold a stateful DoFn's output watermark at the timers it has
still to fire, so when the input watermark jumps (a drain, the end of a test stream) what
those timers emit lands behind the watermark downstream and a global window drops it (an
incident's resolution). Here, as in the Java runners, the earliest event-time timer of a
stateful DoFn that declares ``HOLD_OUTPUT_AT_TIMERS`` holds its output watermark (and the
step's watermarks are refreshed once its state, where a fired timer is cleared, is
committed).

All are covered by the streaming tests. They are tied to the pinned Beam version
(``setup.py``): :func:`install` refuses another one, and this module fails loudly at import
if the internals moved.
"""
from __future__ import annotations

import time
import weakref

import apache_beam
from apache_beam import pvalue
from apache_beam.runners.direct import evaluation_context as _ec
from apache_beam.runners.direct import transform_evaluator as _te
from apache_beam.runners.direct import watermark_manager as _wm
from apache_beam.runners.direct.direct_runner import _StreamingGroupAlsoByWindow
from apache_beam.runners.direct.util import TransformResult
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import MIN_TIMESTAMP

#: The Beam version these fixes are written against (``setup.py`` pins it; a test checks).
PINNED_BEAM = "2.77.0"
_REGISTRY = _te.TransformEvaluatorRegistry._test_evaluators_overrides


class _RootReadEvaluator(_te._TransformEvaluator):
    """One round of a live root transform: its output bundle, its watermark hold, and
    itself again as the next unprocessed bundle until the transform says it is finished."""

    def start_bundle(self):
        pass

    def process_element(self, element):
        pass

    def finish_bundle(self):
        transform = self._applied_ptransform.transform
        elements, watermark, finished = transform.read(time.time())
        bundles = []
        if elements:
            bundle = self._evaluation_context.create_bundle(list(self._outputs)[0])
            for element in elements:
                bundle.output(element)
            bundles.append(bundle)
        again = [] if finished else [
            self._evaluation_context.create_bundle(pvalue.PBegin(transform.pipeline))]
        hold = watermark if watermark is not None else MIN_TIMESTAMP
        return TransformResult(self, bundles, again, None, {None: hold})


_TransformWatermarks = _wm._TransformWatermarks
_ORIGINAL_WATERMARKS_INIT = _TransformWatermarks.__init__


def _watermarks_init(self, clock, keyed_states, transform):
    _ORIGINAL_WATERMARKS_INIT(self, clock, keyed_states, transform)
    # Fix (5): the timers of a stateful DoFn that asks for it (``HOLD_OUTPUT_AT_TIMERS``)
    # hold its output. Not every one: a garbage-collection timer an allowed lateness away
    # would hold everything downstream back by that much.
    self._timers_hold = (isinstance(transform.transform, apache_beam.ParDo)
                         and getattr(transform.transform.dofn, "HOLD_OUTPUT_AT_TIMERS", False)
                         and userstate.is_stateful_dofn(transform.transform.dofn))
    self._held_at = _wm.WatermarkManager.WATERMARK_NEG_INF


def _earliest_timer(self):
    """The earliest event-time timer of this step set and not yet done (a fired timer stays
    in its key's state until its firing is processed)."""
    earliest = _wm.WatermarkManager.WATERMARK_POS_INF
    for state in list(self._keyed_states.values()):
        for timers in list(getattr(state, "timers", {}).values()):
            for (_, domain, _), timestamp in list(timers.items()):
                if domain == TimeDomain.WATERMARK and timestamp < earliest:
                    earliest = timestamp
    return earliest


def _watermarks_refresh(self) -> bool:
    """Beam's ``_TransformWatermarks.refresh``, with fix (5): a stateful DoFn's output
    watermark is held at its earliest event-time timer, as in the Java runners. Without it
    the output watermark of such a step runs ahead of the timers it still has to fire: when
    the input watermark jumps (a drain, the end of a test stream), what a timer then emits
    is behind the watermark downstream, and a global window drops it as late."""
    advanced = _ORIGINAL_REFRESH(self)
    if not getattr(self, "_timers_hold", False):
        return advanced
    with self._lock:
        hold = _earliest_timer(self)
        if hold < self._output_watermark:
            self._output_watermark = max(hold, self._held_at)
        self._held_at = self._output_watermark
    return advanced


_ORIGINAL_REFRESH = _TransformWatermarks.refresh
_ORIGINAL_HANDLE_RESULT = _ec.EvaluationContext.handle_result


def _handle_result(self, completed_bundle, completed_timers, result):
    """Beam's ``handle_result``, then, for a step whose timers hold its output: refresh its
    watermarks once more, since Beam commits the step's keyed state (where a fired timer
    is cleared) only after it refreshed them."""
    committed = _ORIGINAL_HANDLE_RESULT(self, completed_bundle, completed_timers, result)
    manager = self._watermark_manager
    if getattr(manager.get_watermarks(result.transform), "_timers_hold", False):
        with self._lock:
            self._pending_unblocked_tasks.extend(manager._refresh_watermarks(
                result.transform, self._side_inputs_container))
    return committed


class _GroupAlsoByWindowEvaluator(_te._StreamingGroupAlsoByWindowEvaluator):
    def process_element(self, element):
        kwi = element.value
        encoded_k, timer_firings, vs = kwi.encoded_key, kwi.timer_firings, kwi.elements
        k = self.key_coder.decode(encoded_k)
        state = self._step_context.get_keyed_state(encoded_k)
        watermarks = self._evaluation_context._watermark_manager.get_watermarks(
            self._applied_ptransform)
        for firing in timer_firings:
            when = firing.timestamp
            if firing.time_domain == TimeDomain.REAL_TIME:
                when = min(when, watermarks.input_watermark)  # fix (1)
            for wvalue in self.driver.process_timer(firing.window, firing.name,
                                                    firing.time_domain, when,
                                                    state, watermarks.input_watermark):
                self.gabw_items.append(wvalue.with_value((k, wvalue.value)))
        if vs:
            # Fix (2): the input watermark decides what is late.
            for wvalue in self.driver.process_elements(state, vs,
                                                       watermarks.input_watermark,
                                                       watermarks.input_watermark):
                self.gabw_items.append(wvalue.with_value((k, wvalue.value)))
        self.keyed_holds[encoded_k] = state.get_earliest_hold()


class _ParDoEvaluator(_te._ParDoEvaluator):
    def __init__(self, evaluation_context, applied_ptransform, input_committed_bundle,
                 side_inputs):
        super().__init__(evaluation_context, applied_ptransform, input_committed_bundle,
                         side_inputs, perform_dofn_pickle_test=False)  # fix (3)


_derive_specs = userstate.get_dofn_specs
_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _dofn_specs(dofn):
    """Fix (4): a DoFn's specs, derived once per DoFn object."""
    try:
        return _SPECS[dofn]
    except KeyError:
        specs = _SPECS[dofn] = _derive_specs(dofn)
        return specs
    except TypeError:  # not weakly referenceable: derive every time, as before
        return _derive_specs(dofn)


def install() -> None:
    """Fit the BundleBasedDirectRunner of this process for live sources (idempotent)."""
    if apache_beam.__version__ != PINNED_BEAM:
        raise RuntimeError(
            f"the local streaming runner's fixes are written for Beam {PINNED_BEAM}; refusing "
            f"to install them on Beam {apache_beam.__version__} (check them against its "
            "BundleBasedDirectRunner, then update PINNED_BEAM)")
    from beam_pipelines.io.live_sources import LiveRead

    _REGISTRY[LiveRead] = _RootReadEvaluator
    _REGISTRY[_StreamingGroupAlsoByWindow] = _GroupAlsoByWindowEvaluator
    _REGISTRY[apache_beam.ParDo] = _ParDoEvaluator
    userstate.get_dofn_specs = _te.get_dofn_specs = _dofn_specs
    _TransformWatermarks.__init__ = _watermarks_init
    _TransformWatermarks.refresh = _watermarks_refresh
    _ec.EvaluationContext.handle_result = _handle_result


def installed() -> bool:
    from beam_pipelines.io.live_sources import LiveRead

    return (_REGISTRY.get(LiveRead) is _RootReadEvaluator
            and _REGISTRY.get(_StreamingGroupAlsoByWindow) is _GroupAlsoByWindowEvaluator
            and _REGISTRY.get(apache_beam.ParDo) is _ParDoEvaluator
            and userstate.get_dofn_specs is _dofn_specs
            and _TransformWatermarks.refresh is _watermarks_refresh
            and _ec.EvaluationContext.handle_result is _handle_result)
