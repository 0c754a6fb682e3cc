"""p3m.vocabulary: one definition of each closed set of names, which commands and configs share."""

from __future__ import annotations

import pytest

from p3m.errors import ConfigError
from p3m.vocabulary import (
    DATA_SETS,
    BaselineMethod,
    CPMode,
    ObfuscationMethod,
    OutputKind,
    Protocol,
    TestSet,
    TestStrategy,
    TrainingImages,
    check_choice,
    values,
)


def test_test_sets_and_protocols_parse_every_accepted_spelling():
    assert [TestSet.parse(text) for text in ("p3m-500-p", " P3M-500-NP ", "rwp-636", "RWP636", "x")] == [
        TestSet.P, TestSet.NP, TestSet.RWP, TestSet.RWP, None,
    ]
    assert TestSet.RWP.label == "RWP-636" and DATA_SETS == ("train", "P3M-500-P", "P3M-500-NP", "RWP")
    assert [Protocol.parse(text) for text in ("b:n", "BN", "B2N", "n-n", "N:B", "BNN")] == [
        Protocol.BN, Protocol.BN, Protocol.BN, Protocol.NN, None, None,
    ]
    assert Protocol.BB.test_set is TestSet.P and Protocol.NN.training is TrainingImages.N
    # training images x test set: N-trained models tested on blurred faces are no protocol.
    assert Protocol.of("B", "P3M-500-P") is Protocol.BB and Protocol.of("N", "p3m-500-np") is Protocol.NN
    assert Protocol.of("N", "P3M-500-P") is None and Protocol.of("B", "RWP") is None and Protocol.of(None, "P3M-500-P") is None


def test_check_choice_names_the_choices():
    assert check_choice("fcp", CPMode, "cp mode") is CPMode.fcp
    with pytest.raises(ConfigError, match="unknown obfuscation method 'gauss'; choose from blur, mosaic, mask"):
        check_choice("gauss", ObfuscationMethod, "obfuscation method")


def test_the_library_uses_the_vocabulary():
    from p3m.evaluation.baselines import BASELINES
    from p3m.evaluation.tables import PROTOCOLS, SET_NAMES
    from p3m.inference.batch import OUTPUT_KINDS
    from p3m.inference.strategies import STRATEGIES
    from p3m.privacy.obfuscation import METHODS
    from p3m.training.copy_paste import CP_MODES

    assert tuple(BASELINES) == values(BaselineMethod)
    assert values(OutputKind) == OUTPUT_KINDS and values(TestStrategy) == STRATEGIES
    assert values(ObfuscationMethod) == METHODS and values(CPMode) == CP_MODES
    assert values(TestSet) == SET_NAMES and tuple(PROTOCOLS) == values(Protocol)


def test_old_test_set_path_warns():
    with pytest.warns(DeprecationWarning, match="p3m.vocabulary"):
        from p3m.data.sets import TestSet as Old
    assert Old is TestSet


def test_detection_presets_are_the_vocabulary_and_reach_the_folder_run():
    """`p3m anonymize --detect NAME` offers exactly the presets the face search defines, and a
    folder run's configuration turns the name into that search."""
    from p3m.detection import DETECTION_PRESETS
    from p3m.privacy.dataset import AnonymizeConfig
    from p3m.vocabulary import DetectionPreset

    assert values(DetectionPreset) == tuple(DETECTION_PRESETS)
    standard = AnonymizeConfig(detection_preset="standard", rotations=(0, 90)).detection()
    thorough = AnonymizeConfig().detection()
    assert standard.upscaled_rotations == (0,) and standard.rotations == (0, 90)
    assert thorough.upscaled_rotations is None and thorough.upscales(90)
    with pytest.raises(ConfigError, match="unknown detection preset 'fast'"):
        AnonymizeConfig(detection_preset="fast").detection()
