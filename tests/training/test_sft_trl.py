import datasets
from trl import SFTConfig, SFTTrainer

import spectral_moe  # noqa: F401
from spectral_moe import FourierMoEConfig
from spectral_moe.tuners.fouriermoe import FourierMoELayer
from tests.helpers import tiny_llama, tiny_tokenizer


def test_trl_sft_trainer_accepts_a_fouriermoe_peft_config(tmp_path):
    tok = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    data = datasets.Dataset.from_dict({"text": ["Question: what is 2 plus 3? Answer: 5"] * 16})
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(tmp_path),
            max_steps=3,
            per_device_train_batch_size=4,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            logging_steps=1,
            max_length=32,
            disable_tqdm=True,
        ),
        train_dataset=data,
        processing_class=tok,
        peft_config=FourierMoEConfig(target_modules=["q_proj", "v_proj"], n_frequency=8, num_experts=4),
    )
    trainer.train()
    layers = [m for m in trainer.model.modules() if isinstance(m, FourierMoELayer)]
    assert len(layers) == 4
    assert any(layer.fouriermoe_spectrum_real["default"].abs().sum() > 0 for layer in layers)
    assert trainer.state.log_history and "loss" in trainer.state.log_history[0]
