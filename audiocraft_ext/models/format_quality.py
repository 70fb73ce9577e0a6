"""How far a reduced weight format (bfloat16, int8, reduced caches) moves the LM from its float32 self.

Three figures, all on the classifier-free-guided distribution that generation samples from:
- mean KL divergence per token, KL(float32 || candidate), teacher-forced along the generation path
  (`VidMuseLM.compute_predictions_streamed`: the same caches, memory rows and per-step int8 activations);
- top-1 agreement: the fraction of those positions where both put the same token first;
- greedy-code agreement: the fraction of equal codes when both decode greedily from the same video (one
  disagreement changes the context of every later step, so this is the strictest of the three).
"""

from dataclasses import asdict, dataclass
import typing as tp

from audiocraft.models.lm import ConditionTensors
import torch

from .lm import VidMuseLM


@dataclass
class FormatQuality:
    """Agreement of a candidate format with the float32 reference (see the module docstring)."""
    kl_per_token: float
    top1_agreement: float
    greedy_agreement: float

    def to_dict(self) -> tp.Dict[str, float]:
        return asdict(self)


def guided_log_probs(lm: VidMuseLM, codes: torch.Tensor, cfg_conditions: ConditionTensors,
                     cfg_coef: float) -> tp.Tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced CFG-guided log-probabilities `[B, K, T, card]` of codes `[B, K, T]` given `[cond, null]`
    condition tensors (2B items), and the mask `[B, K, T]` of positions the delay pattern defines."""
    output = lm.compute_predictions_streamed(torch.cat([codes, codes]), cfg_conditions)
    cond, null = output.logits.float().split(codes.shape[0])
    guided = null + (cond - null) * cfg_coef
    return torch.log_softmax(guided, dim=-1), output.mask[:codes.shape[0]]


@torch.no_grad()
def compare_formats(reference: VidMuseLM, candidate: VidMuseLM, cfg_conditions: ConditionTensors,
                    codes: torch.Tensor, greedy_steps: int, cfg_coef: float = 3.0,
                    reference_greedy: tp.Optional[torch.Tensor] = None) -> FormatQuality:
    """Compare `candidate` with `reference` (same weights, another format) on one batch.

    Args:
        reference, candidate: the two LMs.
        cfg_conditions: `[cond, null]` condition tensors (from the reference's `compute_video_condition(...,
            with_null=True)`, so that both read the same memory).
        codes: `[B, K, T]` codes to teacher-force (e.g. sampled by the reference).
        greedy_steps: timesteps to decode greedily with each.
        reference_greedy: the reference's greedy codes if already computed.
    """
    ref_logp, mask = guided_log_probs(reference, codes, cfg_conditions, cfg_coef)
    cand_logp, _ = guided_log_probs(candidate, codes, cfg_conditions, cfg_coef)
    ref_logp, cand_logp = ref_logp[mask], cand_logp[mask]
    kl = (ref_logp.exp() * (ref_logp - cand_logp)).sum(-1).mean()
    top1 = (ref_logp.argmax(-1) == cand_logp.argmax(-1)).float().mean()
    if reference_greedy is None:
        reference_greedy = greedy_codes(reference, cfg_conditions, greedy_steps, cfg_coef)
    greedy = (reference_greedy == greedy_codes(candidate, cfg_conditions, greedy_steps, cfg_coef)).float().mean()
    return FormatQuality(float(kl), float(top1), float(greedy))


def greedy_codes(lm: VidMuseLM, cfg_conditions: ConditionTensors, steps: int, cfg_coef: float = 3.0
                 ) -> torch.Tensor:
    """Greedy CFG decoding: codes `[B, K, steps]`."""
    return lm.generate(cfg_condition_tensors=cfg_conditions, max_gen_len=steps, use_sampling=False,
                       cfg_coef=cfg_coef)
