"""The paper's training recipe (§5) for any `AutoModelForSeq2SeqLM`: run configs (`run_config`), the corpus and
tokenizer of a run (`corpus`), updates by token budget (`updates`), the objective (`loss`), Adam and Eq. 3 (`optim`),
checkpoints and their average (`checkpoints`), validation (`validation`), and fine-tuning with transformers'
`Seq2SeqTrainer` (`finetuning`). The loop itself, setup → train → finish, is `loop` (what `vaswani-train` runs);
`launch` runs it in processes of its own, and `learning_curve` scores a run's checkpoints against its updates and
minutes."""
