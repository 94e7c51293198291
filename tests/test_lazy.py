"""A part's package loading its layers on first use (vae_tf.lazy)."""

import pytest

from vae_tf.lazy import layers_on_demand


def test_a_name_that_is_also_a_module_is_refused():
    with pytest.raises(ValueError, match=r"\['standard_normal'\] name both a module"):
        layers_on_demand("vae_tf.priors", {"standard_normal": "standard_normal"})


def test_a_name_is_the_object_its_module_holds_whichever_is_imported_first():
    import vae_tf.objectives.iwae  # a kind's module before the package's names
    from vae_tf.objectives import IWAE, OBJECTIVES

    assert IWAE is vae_tf.objectives.iwae.IWAE
    assert OBJECTIVES.classes["iwae"] is IWAE
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        vae_tf.objectives.nothing
