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

All are covered by the streaming tests. They are tied to the pinned Beam version
(``setup.py``): :func:`install` refuses another one, and this module fails loudly at import
if the internals moved.
"""
from __future__ import annotations

import time
import weakref

import apache_beam
from apache_beam import pvalue
from apache_beam.runners.direct import transform_evaluator as _te
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


def installed() -> bool:
    from beam_pipelines.io.live_sources import LiveRead

    return (_REGISTRY.get(LiveRead) is _RootReadEvaluator
            and _REGISTRY.get(_StreamingGroupAlsoByWindow) is _GroupAlsoByWindowEvaluator
            and _REGISTRY.get(apache_beam.ParDo) is _ParDoEvaluator
            and userstate.get_dofn_specs is _dofn_specs)
