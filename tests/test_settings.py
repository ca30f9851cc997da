"""Each method's settings are stated once: the settings class built with no arguments is the
paper's method, the config section is derived from it, and a section is read back with its keys
and types checked."""
import dataclasses
from typing import Optional

import ml_collections
import optax
import pytest
from protocol_checks import config as config_file

from jaxdistill.config import ConfigError, validate
from jaxdistill.core import hparams
from jaxdistill.diffusion.denoiser import Denoiser
from jaxdistill.diffusion.process import get_process
from jaxdistill.models.discriminator import DiscriminatorHead
from jaxdistill.models.gaussian_mixture import mixture_apply_fn
from jaxdistill.objectives import registry
from jaxdistill.objectives.dmd import DMD2, DistributionMatching

# The constants that make each method the paper's (the settings' comments give the sources).
PAPER = {
    "teacher": dict(weighting="none", label_dropout=0.1),
    "kd": dict(num_pairs=16384, init_from_teacher=False),
    "pd": dict(student_prediction="auto", grid="karras", rho=7.0, start_steps=64, final_steps=1, init_from_teacher=True),
    "guided": dict(w_min=1.0, w_max=5.0, start_steps=64, init_from_teacher=True),
    "cd": dict(num_scales=18, target_ema=0.95, teacher_solver="heun", distance="l2", init_from_teacher=True),
    "lcm": dict(num_ddim_timesteps=50, w_min=3.0, w_max=15.0, distance="pseudo_huber", huber_c=0.001, sigma_data=0.5, timestep_scaling=10.0, target_ema=0.0),
    "tcd": dict(num_ddim_timesteps=50, w_min=3.0, w_max=15.0, distance="pseudo_huber", huber_c=0.001, target_ema=0.0, gamma=0.3),
    "hypersd": dict(segments=(8, 4, 2, 1), steps_per_stage=0, num_ddim_timesteps=50, distance="l2", target_ema=0.0, gamma=0.0),
    "tdd": dict(num_ddim_timesteps=250, schedule_min=4, schedule_max=8, window=260, s_ratio=0.3, uncond_prob=0.2, w_min=4.5, w_max=4.5, distance="pseudo_huber", gamma=0.2, guidance_scale=1.7),
    "scott": dict(num_ddim_timesteps=50, w_min=3.0, w_max=15.0, distance="pseudo_huber", target_ema=0.0, eta=0.5, solver_steps=2),
    "ct": dict(s0=2, s1=150, mu0=0.9, distance="l2", init_from_teacher=False),
    "ict": dict(s0=10, s1=1280, p_mean=-1.1, p_std=2.0, distance="pseudo_huber", huber_c=-1.0, init_from_teacher=False),
    "ect": dict(p_mean=-1.1, p_std=2.0, distance="pseudo_huber", huber_c=0.0, ect_q=2.0, ect_k=8.0, ect_b=1.0, init_from_teacher=True),
    "scd": dict(p_mean=-1.0, p_std=1.4, tangent_norm_c=0.1, tangent_warmup_steps=10_000, time_input="identity", two_step_t=1.1, init_from_teacher=True),
    "sct": dict(p_mean=-1.0, p_std=1.4, tangent_norm_c=0.1, tangent_warmup_steps=10_000, time_input="identity", two_step_t=1.1, init_from_teacher=True),
    "shortcut": dict(target="data", num_steps_max=128, self_consistency_fraction=0.25, target_ema=True),
    "meanflow": dict(target="data", p_mean=-0.4, p_std=1.0, ratio_r_neq_t=0.25, weight_p=1.0, weight_c=1e-3),
    "ctm": dict(num_scales=18, rho=7.0, max_solver_steps=17, solver_step_weighting="linear", teacher_solver="heun", target_ema=0.999,
                dsm_weight=1.0, adaptive_weight=True, dsm_p_mean=-1.2, dsm_p_std=1.2, dsm_high_noise=0.7, gan_weight=0.0,
                gan_adaptive_weight=True, head_lr=2e-3, gamma=0.0, init_from_teacher=True),
    "reflow": dict(teacher_sampler="heun", teacher_nfe=35, time_distribution="u_shaped", u_shape_a=4.0, distance="pseudo_huber", huber_c_per_dim=0.00054, init_from_teacher=True),
    "instaflow": dict(time_distribution="u_shaped", u_shape_a=4.0, distance="pseudo_huber", init_from_teacher=True, distill_distance="l2"),
    "vsd": dict(critic_schedule=((0, 1),), regression_weight=0.0, gan_critic_weight=0.0, gan_generator_weight=0.0),
    "swiftbrush": dict(critic_schedule=((0, 1),), regression_weight=0.0, gan_critic_weight=0.0, score_weight="alpha_sigma", critic_guidance=True),
    "dmd": dict(critic_schedule=((0, 1),), regression_weight=0.25, u_range=(0.02, 0.98), gan_critic_weight=0.0),
    "dmd2": dict(critic_schedule=((0, 5),), regression_weight=0.0, gan_critic_weight=1e-2, gan_generator_weight=3e-3),
    "fdistill": dict(critic_schedule=((0, 5),), gan_critic_weight=1e-2, gan_generator_weight=3e-3, divergence="js"),
    "sid": dict(alpha=1.2, init_sigma=2.5, u_range=(0.0, 0.8), adv_critic_weight=0.0),
    "sida": dict(alpha=1.0, init_sigma=2.5, adv_critic_weight=1.0, adv_generator_weight=1e-4, logit_clip=10.0),
    "sim": dict(huber_c=1e-3, init_sigma=2.5, adv_critic_weight=0.0),
    "add": dict(generator_steps=4, backward_simulation=False, gan_loss="hinge", distill_weight=2.5, r1_weight=1e-5),
    "ladd": dict(generator_steps=4, backward_simulation=False, distill_weight=0.0, r1_weight=0.0, noise_mean=1.0, noise_std=1.0),
}


def test_every_method_is_listed():
    assert set(PAPER) == set(registry.METHODS)


@pytest.mark.parametrize("method", sorted(PAPER))
def test_settings_with_no_arguments_are_the_papers_method(method):
    settings = registry.settings_class(method)()
    assert settings.method == method and settings.section == registry.section(method)
    for field, value in PAPER[method].items():
        assert getattr(settings, field) == value, (method, field)


@pytest.mark.parametrize("method", sorted(PAPER))
def test_config_section_is_derived_from_the_settings_and_reads_back(method):
    cls = registry.settings_class(method)
    section = registry.default_config(method)
    assert set(section.keys()) == set(hparams.fields(cls))
    assert hparams.from_section(cls, section, cls.section) == cls()
    config = ml_collections.ConfigDict({"method": method})
    assert registry.settings(config) == cls()  # no section: the paper's settings


def dmd2_objective(head):
    process = get_process("edm")
    mixture = Denoiser(mixture_apply_fn(process), process, "x0")
    return DistributionMatching(
        settings=DMD2(init_from_teacher=False, critic_from_teacher=False),
        generator=mixture,
        generator_init_fn=None,
        tx=optax.sgd(0.1),
        event_shape=(2,),
        total_steps=10,
        teacher=mixture,
        critic=mixture,
        critic_init_fn=None,
        tx_critic=optax.sgd(0.1),
        head=head,
        tx_head=optax.sgd(0.1) if head is not None else None,
    )


def test_an_objective_built_directly_from_dmd2_settings_runs_dmd2():
    """The reviewer's case: built by hand, DMD2 has its five critic updates and its GAN term."""
    objective = dmd2_objective(DiscriminatorHead(hidden=8))
    assert objective.name == "dmd2" and objective.max_critic_updates == 5
    assert objective.settings.uses_head and objective.settings.gan_generator_weight == 3e-3
    with pytest.raises(ValueError, match="needs a discriminator head"):
        dmd2_objective(None)


def with_dmd_field(config, key, value):
    """``config`` with ``dmd.<key> = value`` as a config file may write it (no ConfigDict type lock)."""
    config = config.copy_and_resolve_references()
    config.dmd = ml_collections.ConfigDict({**config.dmd.to_dict(), key: value})
    return config


def test_unknown_and_mistyped_settings_are_errors_naming_the_field():
    config = config_file("grid25/dmd2")
    with pytest.raises(ConfigError, match=r"unknown setting dmd\.critic_schedul; did you mean dmd\.critic_schedule\?"):
        validate(with_dmd_field(config, "critic_schedul", ((0, 3),)))
    with pytest.raises(ConfigError, match=r"dmd\.num_pairs must be an int, got 'many'"):
        validate(with_dmd_field(config, "num_pairs", "many"))
    with pytest.raises(ConfigError, match=r"dmd\.critic_schedule must be an int, got 'five'"):
        validate(with_dmd_field(config, "critic_schedule", ((0, "five"),)))
    with pytest.raises(ConfigError, match=r"dmd: critic_schedule must be \(\(0, n0\)"):
        validate(with_dmd_field(config, "critic_schedule", ((5, 1),)))


def test_sections_coerce_what_is_unambiguous():
    cls = registry.settings_class("dmd")
    settings = hparams.from_section(cls, {"regression_weight": 1, "u_range": [0.1, 0.9], "critic_schedule": [[0, 2], [10, 1]]}, "dmd")
    assert settings.regression_weight == 1.0 and isinstance(settings.regression_weight, float)
    assert settings.u_range == (0.1, 0.9) and settings.critic_schedule == ((0, 2), (10, 1))
    with pytest.raises(ConfigError, match="must be a bool"):
        hparams.from_section(cls, {"backward_simulation": 1}, "dmd")
    with pytest.raises(ConfigError, match=r"dmd\.u_range must be a tuple \(a number, a number\)"):
        hparams.from_section(cls, {"u_range": (0.1, 0.5, 0.9)}, "dmd")


def test_to_section_keeps_optional_fields_typed():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class WithOptional:
        scale: Optional[float] = None

    section = hparams.to_section(WithOptional())
    section.scale = 2.0
    assert hparams.from_section(WithOptional, section, "x").scale == 2.0 and hparams.from_section(WithOptional, {}, "x").scale is None
