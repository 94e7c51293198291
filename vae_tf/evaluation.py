"""Honest numbers for a trained model: importance-sampled log-likelihood, ELBO, latent usage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Optional

import numpy as np
import tensorflow as tf

from vae_tf.ais import ais_log_likelihood
from vae_tf.config import EvaluationParams
from vae_tf.errors import ParamsError
from vae_tf.heartbeat import PROGRESS_SECONDS, Heartbeat
from vae_tf.objectives.bounds import log_importance_weights
from vae_tf.refinement import refine
from vae_tf.tfp import Normal, tfd

PosteriorFn = Callable[[tf.Tensor], tfd.Distribution]  # x -> q(z|x)
LikelihoodFn = Callable[[tf.Tensor], tfd.Distribution]  # z [..., L] -> p(x|z)


def importance_sampling(x, posterior: PosteriorFn, likelihood: LikelihoodFn, prior: tfd.Distribution,
                        num_samples, chunk_size: int, seed) -> dict[str, tf.Tensor]:
    """Per-example estimates from K = `num_samples` draws z_k ~ q(z|x), the proposal:

        log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K
        E_q[log p(x|z)] ~= (1/K) sum_k log p(x|z_k),   ELBO(q) ~= (1/K) sum_k log w_k

    log q at the draws comes with them (`experimental_sample_and_log_prob`: a flow's needs no
    inverse; a hierarchical q's is an estimate whose weights are unbiased, `AuxiliaryProposal`).

    Draws are taken min(chunk_size, K) at a time (the decoder sees [chunk * batch] latents),
    the log-sum-exp is accumulated across chunks, so memory is bounded for any K. K may be a
    tensor (the exported signature's input; the chunk is then dynamic): draws past K in the last
    chunk are masked. Under XLA pass K as a Python int, so that every shape is static.
    x: [batch, D]; seed: a stateless seed, shape [2]. Returns tensors of shape [batch].
    """
    q = posterior(x)
    if isinstance(num_samples, int):
        chunk_size = min(chunk_size, num_samples)
    else:
        chunk_size = tf.minimum(chunk_size, tf.cast(num_samples, tf.int32))
    num_samples = tf.cast(num_samples, tf.int32)
    n_chunks = (num_samples + chunk_size - 1) // chunk_size
    batch = tf.shape(x)[0]

    def body(i, log_sum_w, sum_log_px, sum_log_w):
        chunk_seed = tf.random.experimental.stateless_fold_in(seed, i)
        z, log_q = q.experimental_sample_and_log_prob(chunk_size, seed=chunk_seed)  # z [chunk, batch, L]
        log_px = likelihood(z).log_prob(x)
        log_w = log_importance_weights(log_px, prior.log_prob(z), log_q)
        valid = (i * chunk_size + tf.range(chunk_size))[:, tf.newaxis] < num_samples
        log_sum_w = tf.reduce_logsumexp(
            tf.stack([log_sum_w, tf.reduce_logsumexp(tf.where(valid, log_w, -np.inf), axis=0)]), axis=0)
        return (i + 1, log_sum_w, sum_log_px + tf.reduce_sum(tf.where(valid, log_px, 0.0), axis=0),
                sum_log_w + tf.reduce_sum(tf.where(valid, log_w, 0.0), axis=0))

    start = (tf.constant(0), tf.fill([batch], -np.inf), tf.zeros([batch]), tf.zeros([batch]))
    _, log_sum_w, sum_log_px, sum_log_w = tf.while_loop(lambda i, *_: i < n_chunks, body, start)
    k = tf.cast(num_samples, tf.float32)
    return {"log_likelihood": log_sum_w - tf.math.log(k), "reconstruction": sum_log_px / k, "elbo": sum_log_w / k}


def model_log_likelihood(model, x, num_samples, chunk_size: int, proposal_samples: int, proposal_scale: float,
                         seed) -> tf.Tensor:
    """log p(x) [batch] by `importance_sampling` with the model's proposal (its posterior, or a
    Gaussian fitted to `proposal_samples` draws of it, widened by `proposal_scale`) and prior;
    seed: a stateless seed [2], split between the proposal and the draws. The exported
    `log_likelihood` signature."""
    proposal_seed, draw_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    proposal = model.proposal(x, proposal_seed, proposal_samples, proposal_scale).distribution
    estimates = importance_sampling(x, lambda _: proposal, model.likelihood.distribution, model.prior_distribution(),
                                    num_samples, chunk_size, draw_seed)
    return estimates["log_likelihood"]


def summarize(log_likelihood: np.ndarray, dimension: int) -> dict[str, float]:
    """NLL in nats per example with its standard error over examples, and bits per dimension."""
    nll = -float(np.mean(log_likelihood))
    return {
        "nll": nll,
        "nll_stderr": float(np.std(log_likelihood, ddof=1) / math.sqrt(len(log_likelihood))),
        "bits_per_dim": nll / (dimension * math.log(2.0)),
    }


def kl_per_dimension(mean: tf.Tensor, scale: tf.Tensor, marginals: tfd.Distribution, seed) -> tf.Tensor:
    """KL(N(mean_j, scale_j^2) || p(z_j)) for each latent dimension j: [batch, latent_dim], p(z_j)
    the prior's marginals (batch shape [L]): closed form where TFP has one, else the mean of
    log N(z_j) - log p(z_j) over `KL_DRAWS` draws z_j ~ N(mean_j, scale_j^2). For a Gaussian q
    this is KL(q(z_j|x) || p(z_j)); for another q, that of the Gaussian with its moments, which
    is no more than KL(q(z_j|x) || p(z_j)) (a Gaussian has the most entropy for its variance).
    The draws are taken one at a time (`tf.map_fn`): a mixture's log-density holds [batch, L, C]
    for one draw, where all of them at once held KL_DRAWS times as much (8 GiB for 500 components,
    batch 100, L = 40)."""
    q = Normal(mean, scale)
    try:
        return tfd.kl_divergence(q, marginals)
    except NotImplementedError:
        z = q.sample(KL_DRAWS, seed=seed)
        log_ratios = tf.map_fn(lambda one: q.log_prob(one) - marginals.log_prob(one), z, parallel_iterations=1)
        return tf.reduce_mean(log_ratios, axis=0)


KL_DRAWS = 256


SURGERY_FLOATS = 2**24  # floats (64 MiB) in one [draws, N, L] block of the ELBO surgery's aggregate posterior
PRIOR_CHUNK = 256  # draws per call of the prior's log_prob in the surgery (see elbo_surgery)


def elbo_surgery(q: tfd.Distribution, prior: tfd.Distribution, num_draws: int, seed,
                 chunk_size: Optional[int] = None) -> dict:
    """The ELBO surgery (Hoffman & Johnson 2016) over N examples: the mean of the ELBO's KL term
    splits as
        mean_n KL(q(z|x_n) || p(z)) = I(n; z) + KL(q(z) || p(z)),
    q(z) = (1/N) sum_m q(z|x_m) the aggregated posterior of these examples (the hole between it
    and the prior: KL(q(z) || p(z))), I the mutual information between an example and its code
    (at most log N). Monte Carlo with `num_draws` z ~ q(z|x_n) per example, log q(z) =
    logsumexp_m log q(z|x_m) - log N. q: batch shape [N].

    Memory: the draws [S, N, L], and blocks of `chunk_size` draws against the N examples
    [chunk, N, L] (by default as many as fit in `SURGERY_FLOATS`), so it grows as S N L, not
    S N^2 L; the prior's log-density is taken `PRIOR_CHUNK` draws at a time (a mixture of Gaussians
    holds [chunk, C]; of other components, such as a VampPrior of an IAF q, [chunk, C, L]). Time
    grows as S N^2. The blocks run as a graph (`tf.function`): eagerly, an IAF's log q (L passes
    of its networks per step, TFP's while loop) held 36 KB a point (15 GB a block at 1000 images,
    L = 40) and ran 7x slower; in a graph, under 3 KB a point."""
    z = q.sample(num_draws, seed=seed)  # [S, N, L]
    n, latent = int(z.shape[1]), int(z.shape[-1])
    chunk_size = chunk_size or max(1, SURGERY_FLOATS // (n * latent))
    flat = tf.reshape(z, [-1, 1, latent])

    @tf.function
    def log_sum_over_examples(block):  # [chunk, 1, L] -> [chunk]: logsumexp_m log q(z|x_m)
        return tf.reduce_logsumexp(q.log_prob(tf.broadcast_to(block, [block.shape[0], n, latent])), axis=1)

    blocks, begin, log_aggregate = range(0, int(flat.shape[0]), chunk_size), time.perf_counter(), []

    def status() -> str:  # the block running (a block of a large surgery can take minutes)
        return f"ELBO surgery: block {len(log_aggregate) + 1} of {len(blocks)}"

    with Heartbeat(status) as heartbeat:
        for done, i in enumerate(blocks, 1):
            log_aggregate.append(log_sum_over_examples(flat[i:i + chunk_size]))
            if time.perf_counter() - heartbeat.last > PROGRESS_SECONDS or done == len(blocks):  # not every block
                elapsed = time.perf_counter() - begin
                print(f"ELBO surgery: {done}/{len(blocks)} blocks of draws in {elapsed:.0f} s, about "
                      f"{elapsed / done * (len(blocks) - done):.0f} s left", flush=True)
                heartbeat.said()
    log_aggregate = tf.concat(log_aggregate, axis=0)
    log_aggregate = tf.reshape(log_aggregate, tf.shape(z)[:2]) - tf.math.log(float(n))
    log_prior = tf.concat([prior.log_prob(flat[i:i + PRIOR_CHUNK, 0]) for i in range(0, int(flat.shape[0]), PRIOR_CHUNK)],
                          axis=0)
    mutual_information = float(tf.reduce_mean(q.log_prob(z) - log_aggregate))
    hole = float(tf.reduce_mean(log_aggregate - tf.reshape(log_prior, tf.shape(z)[:2])))
    return {"kl_term": mutual_information + hole, "mutual_information": mutual_information,
            "kl_aggregate_posterior_prior": hole}


def check_surgery_size(params: EvaluationParams, num_images: int, latent_dim: int) -> None:
    """Refuses an ELBO surgery whose draws [S, N, L] (N = min(surgery_examples, num_images))
    would be over 32 blocks of `SURGERY_FLOATS` (2 GiB)."""
    examples = min(params.surgery_examples, num_images)
    if params.surgery_samples * examples * latent_dim > SURGERY_FLOATS * 32:
        raise ParamsError(f"evaluation.surgery_samples x surgery_examples: the ELBO surgery would hold "
                          f"{params.surgery_samples} x {examples} draws of {latent_dim} latents "
                          f"(over {SURGERY_FLOATS * 32 * 4 / 2**30:.0f} GiB); lower either")


def surgery_subset(num_examples: int, limit: int, seed: int) -> np.ndarray:
    """The examples whose aggregate posterior the surgery takes: all of them up to `limit`, else
    `limit` drawn without replacement (seeded), in order."""
    if num_examples <= limit:
        return np.arange(num_examples)
    return np.sort(np.random.default_rng(seed).choice(num_examples, limit, replace=False))


def active_units(posterior_means: np.ndarray, threshold: float) -> tuple[int, np.ndarray]:
    """Units with Var_x(E_q[z_j|x]) > threshold (Burda et al. 2016): the count and the variances."""
    variances = np.var(posterior_means, axis=0)
    return int(np.sum(variances > threshold)), variances


def evaluate_model(model, x: np.ndarray, params: EvaluationParams, seed: int, jit_compile: bool = True,
                   finished: Optional[Callable[[dict], None]] = None) -> dict:
    """Every test metric of a model on x [N, D] (seeded: the same call gives the same numbers):

    - log p(x) by importance sampling with K = `params.num_samples` draws of the model's proposal
      r (q(z|x), or for an implicit q a Gaussian fitted to its draws, widened by `proposal_scale`),
      and the ELBO of that proposal, E_r[log p(x, z) - log r(z|x)], from the same draws;
      (`params.refinement`, or else the refinement the model was trained with,
      `objective.refinement`: the Gaussian proposal refined per image first, `vae_tf.refinement`);
    - log p(x) by annealed importance sampling (`params.ais`; none if null);
    - L_K at the model's own K (`model.num_samples`) with the same proposal: for a VAE the bound
      it was trained on (for K = 1 a one-sample ELBO estimate);
    - KL per latent dimension and active units, from the posterior moments (for an implicit q,
      of the proposal's draws);
    - the ELBO surgery of the proposal over x (`elbo_surgery`), with `params.surgery_samples`,
      last: `finished`, if given, is called with the result before it (the estimates, which a
      stage writes first, so that a diagnostic that fails after minutes of work loses none of them)."""
    refinement = params.refinement.model_dump() if params.refinement else model.objective.refinement
    if refinement is not None:
        refinement = {**refinement, "gradient": "stopped"}
    check_surgery_size(params, len(x), model.latent_dim)
    surgery = surgery_subset(len(x), params.surgery_examples, seed)
    ais = params.ais
    ais_examples = len(x) if ais is None or ais.num_examples is None else min(ais.num_examples, len(x))
    out, traced = _per_image(model, x, params, refinement, ais_examples, seed, jit_compile)
    result = _summary(model, x, params, refinement, ais_examples, out, traced["description"], traced.get("ais_start"))
    if finished is not None:
        finished(result)
    surgery_seed, proposal_seed = tf.unstack(tf.random.experimental.stateless_split(tf.constant([seed, -1]), 2))
    whole, description = posterior_of(model, x[surgery], params, proposal_seed)
    of = f"the {len(x)} images" if len(surgery) == len(x) else \
        f"{len(surgery)} of the {len(x)} images (evaluation.surgery_examples, drawn without replacement)"
    result["metrics"]["elbo_surgery"] = {
        "estimator": f"Monte Carlo, {params.surgery_samples} draws of the {description} proposal per image, "
                     f"aggregated posterior of {of}",
        **elbo_surgery(whole, model.prior_distribution(), params.surgery_samples, surgery_seed),
    }
    return result


def posterior_of(model, x: np.ndarray, params: EvaluationParams, seed) -> tuple[tfd.Distribution, str]:
    """q(z|x) of the images x with a log-density anywhere (`Proposal.anywhere`: q, or a Gaussian
    fitted to its draws), and its description: made `params.batch_size` images at a time (the
    i-th batch's seed folded from `seed` and i) and concatenated along the batch (TFP's
    `BatchConcat`), so that a proposal fitted to `proposal_samples` draws holds [draws,
    batch_size, hidden units] while it is made, whatever the number of images."""
    size = params.batch_size
    parts = [model.proposal(tf.constant(x[start:start + size]), tf.random.experimental.stateless_fold_in(seed, start),
                            params.proposal_samples, params.proposal_scale).anywhere()
             for start in range(0, len(x), size)]
    return tfd.BatchConcat([q for q, _ in parts], axis=0), parts[0][1]


def _per_image(model, x: np.ndarray, params: EvaluationParams, refinement: Optional[dict], ais_examples: int,
               seed: int, jit_compile: bool) -> tuple[dict[str, np.ndarray], str]:
    """`evaluate_model`'s estimates for each image of x, batch by batch, with a line of progress
    per batch: importance sampling, L_K, KL per dimension, the posterior means, AIS on the first
    `ais_examples` images; and the descriptions of the proposal and of AIS's start (`traced`)."""
    bound_k, ais = model.num_samples, params.ais
    traced = {}  # what tracing the step learns of the proposal and of AIS's start

    @tf.function(jit_compile=jit_compile)
    def batch_metrics(xb, batch_seed, with_ais: bool):
        prior = model.prior_distribution()
        seeds = tf.unstack(tf.random.experimental.stateless_split(batch_seed, 5))
        offer = model.proposal(xb, seeds[0], params.proposal_samples, params.proposal_scale)
        traced["description"] = offer.description
        proposal, (mean, scale) = offer.distribution, offer.moments(seeds[3])
        likelihood = model.likelihood.distribution
        if refinement is not None:
            proposal = refine(proposal, xb, likelihood, prior, tf.random.experimental.stateless_fold_in(seeds[0], 1),
                              **refinement)
        estimates = importance_sampling(xb, lambda _: proposal, likelihood, prior, params.num_samples,
                                        params.chunk_size, seeds[1])
        bound = importance_sampling(xb, lambda _: proposal, likelihood, prior, bound_k, params.chunk_size, seeds[2])
        kl_per_dim = kl_per_dimension(mean, scale, model.prior.marginals(model.posterior),
                                      tf.random.experimental.stateless_fold_in(seeds[3], 1))
        out = {**estimates, "iwae_bound": bound["log_likelihood"], "kl_per_dim": kl_per_dim, "posterior_mean": mean}
        if with_ais:
            if ais.start == "prior":
                start, traced["ais_start"] = None, "p(z)"
            elif refinement is not None:
                start, traced["ais_start"] = proposal, None  # named as the refined proposal is
            else:
                start, traced["ais_start"] = offer.anywhere()
            annealed = ais_log_likelihood(xb, likelihood, prior, ais.num_chains, ais.num_steps,
                                          ais.leapfrog_steps, ais.step_size, seeds[4], start)
            out.update(ais_log_likelihood=annealed["log_likelihood"], ais_acceptance=annealed["acceptance"])
        return out

    # The last batch is padded to full size (and the padding dropped) so XLA compiles one shape.
    batch_size = params.batch_size
    padded = np.concatenate([x, np.zeros((-len(x) % batch_size, x.shape[1]), x.dtype)])
    parts, begin, start = [], time.perf_counter(), 0

    def status() -> str:  # the batch running
        return f"evaluating images {start + 1}-{min(start + batch_size, len(x))} of {len(x)}"

    with Heartbeat(status) as heartbeat:
        for start in range(0, len(x), batch_size):
            parts.append(batch_metrics(tf.constant(padded[start:start + batch_size]),
                                       tf.constant([seed, start], tf.int32), ais is not None and start < ais_examples))
            done, elapsed = min(start + batch_size, len(x)), time.perf_counter() - begin
            if start == 0:
                first = elapsed  # compiles the step: the estimate of the time left starts from the next batch
            pace = (elapsed - first) / (done - batch_size) if done > batch_size else first / done
            print(f"evaluated {done}/{len(x)} images in {elapsed:.0f} s, about {pace * (len(x) - done):.0f} s left",
                  flush=True)
            heartbeat.said()
    out = {key: np.concatenate([part[key].numpy() for part in parts if key in part])[:len(x)] for key in parts[0]}
    return out, traced


def _summary(model, x: np.ndarray, params: EvaluationParams, refinement: Optional[dict], ais_examples: int,
             out: dict[str, np.ndarray], proposal: str, ais_start: Optional[str]) -> dict:
    """The per-image estimates `out` summed up: the metrics (each estimate named with its
    estimator: `proposal` IS's, `ais_start` AIS's start, None for the refined proposal), log p(x)
    per image, KL and activity per latent dimension."""
    ais = params.ais
    kl_dims = out["kl_per_dim"].mean(axis=0)
    n_active, variances = active_units(out["posterior_mean"], params.active_unit_threshold)
    reconstruction, elbo = float(out["reconstruction"].mean()), float(out["elbo"].mean())
    if refinement is not None:
        proposal += (f" refined by {refinement['steps']} gradient steps on each image's ELBO (step size "
                     f"{refinement['step_size']:g}, {refinement['num_draws']} draws a step)")
    metrics = {
        "estimator": f"importance sampling, {proposal} proposal, K={params.num_samples}",
        "num_samples": params.num_samples,
        "num_examples": len(x),
        **summarize(out["log_likelihood"], x.shape[1]),
        "elbo": elbo,  # of the proposal
        "iwae_bound": float(out["iwae_bound"].mean()),  # L_K, K = iwae_num_samples: a bound, not log p(x)
        "iwae_num_samples": model.num_samples,
        "reconstruction": reconstruction,
        "kl": reconstruction - elbo,
        "active_units": n_active,
        "latent_dim": int(kl_dims.shape[0]),
    }
    sizes = model.posterior.latent_dims
    if len(sizes) > 1:  # a stack (`vae_tf.models.depth`): each layer's share, bottom first
        ends = np.cumsum(sizes)
        metrics["layers"] = [{"latent_dim": int(size), "active_units": int(np.sum(activity > params.active_unit_threshold)),
                              "kl_per_dimension": float(np.sum(kl))}
                             for size, activity, kl in zip(sizes, np.split(variances, ends[:-1]),
                                                           np.split(kl_dims, ends[:-1]))]
    if ais is not None:
        subset = "" if ais_examples == len(x) else f", the first {ais_examples} of the {len(x)} images"
        metrics["ais"] = {
            "estimator": f"annealed importance sampling from {ais_start or proposal}, "
                         f"{ais.num_chains} chains x {ais.num_steps} "
                         f"HMC steps ({ais.leapfrog_steps} leapfrog){subset}",
            **({} if not subset else {"num_examples": ais_examples}),
            **summarize(out["ais_log_likelihood"][:ais_examples], x.shape[1]),
            "acceptance": float(out["ais_acceptance"][:ais_examples].mean()),
        }
    return {"log_likelihood": out["log_likelihood"], "metrics": metrics, "kl_per_dim": kl_dims, "activity": variances,
            "ais_log_likelihood": out["ais_log_likelihood"][:ais_examples] if ais is not None else None}
