"""SFT with TRL's SFTTrainer on prompt-completion pairs: the prompt is rendered by the shared
prompt module and the model's chat template (exactly what the self_aware policy sends at
inference), and the loss covers the completion only. Full fine-tune, or LoRA through peft
(merged into the weights, or saved as base plus adapter)."""

from __future__ import annotations

from pathlib import Path

from swarm.training.labels import Example


def run_sft(model_dir: Path, out_dir: Path, train: list[Example], validation: list[Example], spec, seed: int, log=None) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from swarm.training.generation import Prompter, load_tokenizer
    from swarm.training.rl import last_checkpoint

    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "right"
    prompter = Prompter(tokenizer)

    def rows(examples: list[Example]) -> Dataset:
        return Dataset.from_list([{"prompt": prompter.render(e.query, e.alpha, e.allow_reject), "completion": prompter.completion(e.target)}
                                  for e in examples])

    ckpt = out_dir / "checkpoints"
    config = SFTConfig(
        output_dir=str(ckpt), use_cpu=True, report_to=[], seed=seed, num_train_epochs=spec.epochs,
        learning_rate=spec.learning_rate, per_device_train_batch_size=spec.batch_size, per_device_eval_batch_size=spec.batch_size,
        max_length=spec.max_length, completion_only_loss=True, packing=False, logging_steps=10,
        eval_strategy="epoch", save_strategy="steps", save_steps=spec.save_steps, save_total_limit=1,
        lr_scheduler_type="cosine", warmup_steps=5, dataloader_num_workers=0, disable_tqdm=False,
        activation_checkpointing=False,  # tiny models: memory is no issue, and the old name warns in transformers 5
    )
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    peft_config = None
    if spec.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
                                 target_modules=spec.lora.target_modules, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=rows(train), eval_dataset=rows(validation),
                         processing_class=tokenizer, peft_config=peft_config)
    resume = last_checkpoint(ckpt)
    if log:
        log.info("sft: training", examples=len(train), validation=len(validation), method=spec.method,
                 resume=str(resume) if resume else None)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    metrics = trainer.evaluate()
    final = out_dir / "model"
    trained = trainer.model
    if spec.method == "lora" and spec.lora.merge:
        trained = trained.merge_and_unload()
    trained.save_pretrained(str(final))
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(final))
    return {"steps": trainer.state.global_step, "train_loss": result.training_loss, "eval_loss": metrics.get("eval_loss"),
            "tokens_trained": int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * spec.epochs), "method": spec.method}
