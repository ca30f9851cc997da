"""SiD, SiDA and SIM (jaxdistill/objectives/sid.py) on a latent text-to-image teacher: what a text-only prompt cache
cannot serve and networks not started from the teacher's UNet are refused through `jaxdistill train` (one line, exit
status 2, no workdir written: ``generator.check_text_run``), and SiD's generator input noise level on SD's schedule is
SiD-LSG's DDPM step 625. Runs are built on the session's tiny SD 1.5 folder and its caches (conftest)."""
import pytest

CONFIG = '''from jaxdistill.benchmarks import stable_diffusion


def get_config(method):
    c = stable_diffusion.smoke(stable_diffusion.student(method), "sd15")
    c.eval.nfes = (1,)  # a one-step generator
    return c
'''


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
    """A config file: the Stable Diffusion base with the method named by its argument, at smoke size."""
    path = tmp_path_factory.mktemp("sid_config") / "sd15_score_identity.py"
    path.write_text(CONFIG)
    return str(path)


@pytest.mark.parametrize("method, cache, overrides, message", [
    ("sid", "text", ["train.sample_every=5"], "sid: sample plots need prompts' embeddings"),
    ("sid", "text", ["sid.init_from_teacher=False"], "sid: with a Stable Diffusion teacher the generator and critic are its UNet and start from its weights; set sid.init_from_teacher=True"),
    ("sim", "images", ["sid.critic_from_teacher=False"], "set sid.critic_from_teacher=True"),
    ("sida", "text", [], "sida: sida's discriminator (its real samples) reads image latents, but the cache"),
    ("sid", "text", ["sid.generator_steps=2", "sid.backward_simulation=False"], "sid: sid.backward_simulation=False (later generator steps start from noised data) reads image latents"),
], ids=["sample_plots", "generator_not_from_teacher", "critic_not_from_teacher", "sida_on_text_only", "noised_data_on_text_only"])
def test_a_score_identity_run_an_sd_teacher_cannot_serve_is_one_line_exit_2_and_writes_nothing(sd15_cache, config_file, tmp_path, capsys, method, cache, overrides, message):
    from jaxdistill.cli import main

    folder, images, text = sd15_cache
    workdir = tmp_path / "run"
    args = ["train", "--config", f"{config_file}:{method}", "--workdir", str(workdir), "--quiet", f"--config.teacher.path={folder}",
            f"--config.data.path={images if cache == 'images' else text}", *(f"--config.{o}" for o in overrides)]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not workdir.exists()


def test_sids_generator_starts_at_sid_lsgs_ddpm_step_625_from_the_teachers_unet(sd15_cache, config_file):
    """init_sigma = 2.5 on SD's scaled-linear schedule is process time 625.8 (DDPM step 624.8; SiD-LSG's run_sid.sh:
    --init_timestep 625); generator and critic are the teacher's UNet denoiser; SiDA builds on a cache with images."""
    from jaxdistill.build import build
    from jaxdistill.config import load

    folder, images, text = sd15_cache
    built = build(load(f"{config_file}:sid", [f"teacher.path={folder}", f"data.path={text}"]))
    obj = built.objective
    assert abs(float(obj.generator_times()[0]) - 1.0 - 625.0) < 0.5
    assert obj.generator is obj.teacher and obj.critic is obj.teacher
    assert obj.settings.init_from_teacher and obj.settings.critic_from_teacher
    assert build(load(f"{config_file}:sida", [f"teacher.path={folder}", f"data.path={images}"])).objective.head is not None
