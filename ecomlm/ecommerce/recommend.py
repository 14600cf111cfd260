"""Recommender: candidate retrieval, then a trained ranker, over product
embeddings and interaction histories.

    rec = Recommender().fit(products_df, events_df)   # events: user_id, product_id, event, timestamp
    rec.recommend("U10042", k=10)                      # [(product_id, score), ...] best first
    rec.recommend(query="waterproof boots for hiking") # cold start from text
    rec.explain("U10042", "P1133")                     # "Recommended because ..."
    rec.evaluate(test_events_df, k=10)                 # {"recall", "ndcg", "coverage", ...}

How it works
- Item vectors: each product's text (name, brand, category, color, material,
  features) embedded with all-MiniLM-L6-v2.
- User state from the history, each event weighted (view 1, cart 3, purchase 5)
  and halved every `half_life_days`: a profile vector (weighted mean of item
  vectors), shares of categories, subcategories, brands and colors, the mean
  log price, and an item-item co-visitation score.
- Candidates: the union of the best items by profile cosine, by
  co-visitation, by category share x popularity and by popularity
  (`n_candidates` in all), minus what the user has already seen.
- Ranker: a classifier on (user, item) features trained on the training data
  itself: the state built from the first 75 % of its time span predicts the
  new items each user touched in the last 25 %. `ranker="logistic"` (NumPy
  logistic regression) or `"gbdt"` (NumPy gradient-boosted trees, default).
- `method="popularity"`, `"random"` and `"content"` (profile cosine only) are
  the baselines `evaluate` is compared against (`compare_methods`).

Users with no history get popular items, or with `query=` the items nearest
the text; products with no events are reachable through their text vectors.
Sizes: the user x item matrices are dense NumPy (fine for thousands of users
and items; a larger shop wants sparse matrices here).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import BadRequestError, NotFoundError
from . import _validate as V
from ._embed import DEFAULT_EMBEDDING_MODEL, make_embedder
from ._learn import GradientBoostedTrees, LogisticRegression

__all__ = ["Recommender", "time_split", "compare_methods", "product_text", "EVENT_WEIGHTS"]

EVENT_WEIGHTS = {"view": 1.0, "cart": 3.0, "purchase": 5.0}
FEATURES = ["profile_cosine", "category_share", "subcategory_share", "brand_share", "color_share",
            "abs_log_price_gap", "log_price_gap", "log_popularity", "log_recent_popularity", "covisitation",
            "log_user_activity", "log_item_age_days"]
METHODS = ("ranker", "content", "popularity", "random")


def product_text(row) -> str:
    """The text a product is embedded from."""
    get = (lambda c: row.get(c)) if isinstance(row, dict) else (lambda c: row[c] if c in row.index else None)
    parts = []
    name = get("name") or get("title")
    if _ok(name):
        parts.append(str(name))
    kind = " ".join(str(x) for x in (get("brand"), get("category"), get("subcategory")) if _ok(x))
    if kind:
        parts.append(kind)
    for label, col in (("Color", "color"), ("Material", "material")):
        if _ok(get(col)):
            parts.append(f"{label}: {get(col)}")
    for col in ("features", "description"):
        if _ok(get(col)):
            parts.append(str(get(col)))
    return ". ".join(parts) if parts else str(get("product_id"))


def _ok(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and str(x).strip() != ""


def time_split(events, test_frac: float = 0.2):
    """Split events by time: the last `test_frac` of the time span (by event
    count) is the test set. Returns (train_df, test_df)."""
    ev = _events(events, "events")
    if not isinstance(test_frac, (int, float)) or not 0 < test_frac < 1:
        raise BadRequestError("test_frac must be between 0 and 1", param="test_frac")
    cut = ev["timestamp"].quantile(1 - test_frac)
    return ev[ev["timestamp"] < cut].reset_index(drop=True), ev[ev["timestamp"] >= cut].reset_index(drop=True)


def _events(events, param: str):
    import pandas as pd

    ev = V.dataframe(events, param, ("user_id", "product_id", "event", "timestamp"))
    ev = ev.copy()
    ev["user_id"] = ev["user_id"].astype(str)
    ev["product_id"] = ev["product_id"].astype(str)
    try:
        ev["timestamp"] = pd.to_datetime(ev["timestamp"])
    except (ValueError, TypeError) as e:
        raise BadRequestError(f"{param}.timestamp holds values that are not dates/times ({e})",
                              param=f"{param}.timestamp") from None
    bad = sorted(set(ev["event"].astype(str)) - set(EVENT_WEIGHTS))
    if bad:
        raise BadRequestError(f"{param}.event has unknown value(s) {bad[:5]}; expected {list(EVENT_WEIGHTS)}",
                              param=f"{param}.event")
    return ev


@dataclass
class _State:
    """What the recommender knows at one moment: users x items, shape (U, I)."""

    users: dict            # user_id -> row
    W: np.ndarray          # (U, I) decayed event weights
    seen: np.ndarray       # (U, I) bool
    profile: np.ndarray    # (U, D) unit profile vectors (0 for no history)
    cat: np.ndarray        # (U, I) share of the item's category in the user's history
    sub: np.ndarray        # (U, I)
    brand: np.ndarray      # (U, I)
    color: np.ndarray      # (U, I)
    logp: np.ndarray       # (U,) weighted mean log price (nan: unknown)
    activity: np.ndarray   # (U,) number of events
    pop: np.ndarray        # (I,) weighted event count
    recent: np.ndarray     # (I,) weighted event count in the last 14 days
    covis: np.ndarray      # (U, I) co-visitation score
    t_ref: "object"        # pandas Timestamp the state is as of


class Recommender:
    def __init__(self, method: str = "ranker", *, ranker: str = "gbdt", model: str = DEFAULT_EMBEDDING_MODEL,
                 embedder=None, n_candidates: int = 100, half_life_days: float = 30.0,
                 event_weights: Optional[dict] = None, negatives_per_user: int = 40, seed: int = 0):
        self.method = V.one_of(method, "method", METHODS)
        self.ranker_name = V.one_of(ranker, "ranker", ("gbdt", "logistic"))
        self.n_candidates = V.positive_int(n_candidates, "n_candidates")
        self.negatives_per_user = V.positive_int(negatives_per_user, "negatives_per_user")
        if not isinstance(half_life_days, (int, float)) or half_life_days <= 0:
            raise BadRequestError("half_life_days must be a positive number", param="half_life_days")
        self.half_life_days = float(half_life_days)
        if event_weights is not None and not isinstance(event_weights, dict):
            raise BadRequestError("event_weights must be a dict such as {'view': 1, 'cart': 3, 'purchase': 5}",
                                  param="event_weights")
        for ev, w in (event_weights or {}).items():
            if ev not in EVENT_WEIGHTS:
                raise BadRequestError(f"event_weights has an unknown event {ev!r}; events are "
                                      f"{', '.join(EVENT_WEIGHTS)}", param=f"event_weights.{ev}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise BadRequestError(f"event_weights[{ev!r}] must be a number >= 0, got {w!r}",
                                      param=f"event_weights.{ev}")
        self.event_weights = dict(EVENT_WEIGHTS, **(event_weights or {}))
        self.seed = V.integer(seed, "seed")
        self.embed = make_embedder(model, embedder) if method != "random" and method != "popularity" else None
        self._embed_args = (model, embedder)
        self.state: Optional[_State] = None

    # ------------------------------------------------------------------ fit
    def fit(self, products, events) -> "Recommender":
        """Learn from a catalog (product_id plus any of name, brand, category,
        subcategory, color, material, price, features, added_on) and events
        (user_id, product_id, event in view/cart/purchase, timestamp)."""
        self._set_products(products)
        ev = _events(events, "events")
        unknown = sorted(set(ev["product_id"]) - set(self.item_ids))
        if unknown:
            raise BadRequestError(f"events.product_id has {len(unknown)} id(s) not in the catalog, e.g. {unknown[:3]}",
                                  param="events.product_id")
        self.events = ev.sort_values("timestamp", kind="stable").reset_index(drop=True)
        self.ranker = None
        if self.method == "ranker":
            self.ranker, self.train_stats = self._train_ranker(self.events)
        self.state = self._state(self.events, self.events["timestamp"].max())
        return self

    def _set_products(self, products) -> None:
        import pandas as pd

        df = V.dataframe(products, "products", ("product_id",))
        df = df.copy()
        df["product_id"] = df["product_id"].astype(str)
        dup = df["product_id"][df["product_id"].duplicated()]
        if len(dup):
            raise BadRequestError(f"products.product_id has duplicates, e.g. {dup.iloc[0]!r}", param="products.product_id")
        if "price" in df.columns:
            price = pd.to_numeric(df["price"], errors="coerce")
            if price.isna().any() and df["price"].notna().any():
                bad = df["price"][price.isna() & df["price"].notna()]
                if len(bad):
                    raise BadRequestError(f"products.price must be numeric, got {bad.iloc[0]!r}", param="products.price")
            df["price"] = price
        self.products = df.reset_index(drop=True)
        self.item_ids = self.products["product_id"].tolist()
        self.item_index = {p: i for i, p in enumerate(self.item_ids)}
        I = len(self.item_ids)

        def codes(col):
            if col not in df.columns:
                return np.zeros(I, np.int64), 1
            vals = df[col].fillna("").astype(str).str.lower()
            uniq = {v: j for j, v in enumerate(sorted(set(vals)))}
            return np.array([uniq[v] for v in vals], np.int64), len(uniq)

        self.cat_code, self.n_cat = codes("category")
        self.sub_code, self.n_sub = codes("subcategory")
        self.brand_code, self.n_brand = codes("brand")
        self.color_code, self.n_color = codes("color")
        price = df["price"].to_numpy(np.float64) if "price" in df.columns else np.full(I, np.nan)
        self.log_price = np.log1p(np.where(np.isfinite(price) & (price > 0), price, np.nan))
        if "added_on" in df.columns:
            self.added = pd.to_datetime(df["added_on"], errors="coerce")
        else:
            self.added = pd.Series(pd.NaT, index=df.index)
        if self.embed is not None:
            self.texts = [product_text(r) for r in df.to_dict("records")]
            self.E = self.embed(self.texts).astype(np.float64)            # (I, D)
        else:
            self.texts, self.E = None, np.zeros((I, 1))

    def add_products(self, products) -> "Recommender":
        """Add products with no events yet (cold start): they are reachable
        through their text vectors until events arrive with the next fit."""
        self._need_fit()
        import pandas as pd

        new = V.dataframe(products, "products", ("product_id",)).copy()
        new["product_id"] = new["product_id"].astype(str)
        clash = sorted(set(new["product_id"]) & set(self.item_ids))
        if clash:
            raise BadRequestError(f"products.product_id {clash[0]!r} is already in the catalog", param="products.product_id")
        old_I = len(self.item_ids)
        self._set_products(pd.concat([self.products, new], ignore_index=True))
        self.state = self._state(self.events, self.state.t_ref)
        assert self.state.W.shape[1] == old_I + len(new)
        return self

    # ---------------------------------------------------------------- state
    def _state(self, ev, t_ref) -> _State:
        import pandas as pd

        I = len(self.item_ids)
        users = {u: j for j, u in enumerate(sorted(set(ev["user_id"])))}
        U = len(users)
        ui = ev["user_id"].map(users).to_numpy()
        ii = ev["product_id"].map(self.item_index).to_numpy()
        age = (t_ref - ev["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
        w = ev["event"].map(self.event_weights).to_numpy(np.float64) * 0.5 ** (np.maximum(age, 0) / self.half_life_days)
        W = np.zeros((U, I))
        np.add.at(W, (ui, ii), w)
        seen = W > 0
        tot = W.sum(axis=1, keepdims=True)
        Wn = W / np.maximum(tot, 1e-12)

        def share(code, n):
            M = np.zeros((I, n))
            M[np.arange(I), code] = 1.0
            return (Wn @ M)[:, code]                                  # (U, I)

        profile = Wn @ self.E if self.E.shape[1] > 1 else np.zeros((U, 1))
        profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
        lp = np.nan_to_num(self.log_price, nan=0.0)
        has_p = np.isfinite(self.log_price).astype(float)
        denom = Wn @ has_p
        logp = np.where(denom > 0, (Wn @ lp) / np.maximum(denom, 1e-12), np.nan)
        raw = ev["event"].map(self.event_weights).to_numpy(np.float64)
        pop = np.bincount(ii, raw, I)
        recent_mask = age <= 14
        recent = np.bincount(ii[recent_mask], raw[recent_mask], I)
        activity = np.bincount(ui, minlength=U).astype(np.float64)
        S = seen.astype(np.float64)                                   # (U, I)
        C = S.T @ S                                                   # (I, I) co-visits
        np.fill_diagonal(C, 0.0)
        deg = np.sqrt(np.maximum(S.sum(axis=0), 1.0))
        C = C / deg[:, None] / deg[None, :]
        covis = Wn @ C
        return _State(users, W, seen, profile, share(self.cat_code, self.n_cat), share(self.sub_code, self.n_sub),
                      share(self.brand_code, self.n_brand), share(self.color_code, self.n_color), logp, activity,
                      pop, recent, covis, pd.Timestamp(t_ref))

    def _features(self, st: _State, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Features (n, F) of the pairs (user row u[n], item i[n]); see FEATURES."""
        cos = np.einsum("nd,nd->n", st.profile[u], self.E[i]) if self.E.shape[1] > 1 else np.zeros(len(u))
        gap = self.log_price[i] - st.logp[u]
        gap = np.nan_to_num(gap, nan=0.0)
        age = (st.t_ref - self.added).dt.days.to_numpy(np.float64) if self.added.notna().any() else np.full(len(self.item_ids), 365.0)
        age = np.nan_to_num(age, nan=365.0)
        return np.stack([cos, st.cat[u, i], st.sub[u, i], st.brand[u, i], st.color[u, i], np.abs(gap), gap,
                         np.log1p(st.pop[i]), np.log1p(st.recent[i]), st.covis[u, i], np.log1p(st.activity[u]),
                         np.log1p(np.clip(age[i], 0, None))], axis=1)

    def _candidates(self, st: _State, u: int, exclude_seen: bool = True, allowed: Optional[np.ndarray] = None) -> np.ndarray:
        I = len(self.item_ids)
        n = min(self.n_candidates, I)
        keep = np.ones(I, bool) if allowed is None else allowed.copy()
        if exclude_seen:
            keep &= ~st.seen[u]
        pools = []
        popn = np.log1p(st.pop)
        signals = [st.covis[u], st.cat[u] * (1 + popn), popn]
        if self.E.shape[1] > 1:
            signals.insert(0, self.E @ st.profile[u])
        per = max(1, n // len(signals))
        for s in signals:
            s = np.where(keep, s, -np.inf)
            top = np.argpartition(-s, min(per, I - 1))[:per]
            pools.append(top[np.isfinite(s[top])])
        cand = np.unique(np.concatenate(pools)) if pools else np.zeros(0, np.int64)
        return cand[keep[cand]]

    def _train_ranker(self, ev):
        times = ev["timestamp"]
        cut = times.quantile(0.75)
        hist, label = ev[times < cut], ev[times >= cut]
        if hist.empty or label.empty or hist["user_id"].nunique() < 2:
            raise BadRequestError("events span too little time to train the ranker (need history and a later "
                                  "window); use method='content' or 'popularity'", param="events")
        st = self._state(hist, cut)
        rng = np.random.default_rng(self.seed)
        U_rows, I_rows, y = [], [], []
        label_items = label.groupby("user_id")["product_id"].apply(set)
        for user, items in label_items.items():
            if user not in st.users:
                continue
            u = st.users[user]
            pos = np.array(sorted(self.item_index[p] for p in items if not st.seen[u, self.item_index[p]]), np.int64)
            if len(pos) == 0:
                continue
            cand = self._candidates(st, u)
            neg = np.setdiff1d(cand, pos)
            if len(neg) > self.negatives_per_user:
                neg = rng.choice(neg, self.negatives_per_user, replace=False)
            rand = rng.choice(len(self.item_ids), min(10, len(self.item_ids)), replace=False)
            rand = np.setdiff1d(rand[~st.seen[u, rand]], pos)
            neg = np.union1d(neg, rand)
            U_rows += [u] * (len(pos) + len(neg))
            I_rows += pos.tolist() + neg.tolist()
            y += [1] * len(pos) + [0] * len(neg)
        if not y or sum(y) == 0 or sum(y) == len(y):
            raise BadRequestError("no user has both history and later new items to learn the ranker from",
                                  param="events")
        X = self._features(st, np.array(U_rows), np.array(I_rows))
        y = np.array(y)
        model = GradientBoostedTrees() if self.ranker_name == "gbdt" else LogisticRegression()
        model.fit(X, y)
        return model, {"n_pairs": len(y), "n_positive": int(y.sum()), "cut": cut}

    # ------------------------------------------------------------ recommend
    def _need_fit(self):
        if self.state is None:
            raise BadRequestError("call fit(products, events) first", param="fit")

    def _user_scores(self, u: Optional[int], exclude_seen: bool, query_vec: Optional[np.ndarray] = None) -> np.ndarray:
        """Scores over all items (I,); -inf for items not to recommend."""
        st = self.state
        I = len(self.item_ids)
        out = np.full(I, -np.inf)
        pop = np.log1p(st.pop) / max(np.log1p(st.pop).max(), 1e-12)
        cold = u is None or st.activity[u] == 0
        if self.method == "random":
            seed = zlib.crc32(f"{self.seed}:{u}".encode())
            s = np.random.default_rng(seed).random(I)
        elif self.method == "popularity" or (cold and query_vec is None):
            s = pop.copy()
        elif query_vec is not None and cold:
            s = self.E @ query_vec + 0.05 * pop
        elif self.method == "content":
            s = self.E @ st.profile[u] + 0.01 * pop
        else:
            cand = self._candidates(st, u, exclude_seen)
            if len(cand) == 0:
                return out
            X = self._features(st, np.full(len(cand), u), cand)
            out[cand] = self.ranker.predict_proba(X)
            if query_vec is not None:
                out[cand] += self.E[cand] @ query_vec
            return out
        if query_vec is not None and not cold:
            s = s + self.E @ query_vec
        if exclude_seen and u is not None:
            s = np.where(st.seen[u], -np.inf, s)
        return s

    def recommend(self, user_id=None, k: int = 10, *, query: Optional[str] = None,
                  exclude_seen: bool = True) -> list[tuple[str, float]]:
        """Top-k (product_id, score) for a user, best first. Unknown or new
        users get popular items, or with `query` the items nearest the text."""
        self._need_fit()
        V.positive_int(k, "k")
        if user_id is None and query is None:
            raise BadRequestError("give a user_id, a query, or both", param="user_id")
        if user_id is not None and not isinstance(user_id, (str, int, np.integer)):
            raise BadRequestError(f"user_id must be a string, got {type(user_id).__name__}", param="user_id")
        qv = None
        if query is not None:
            V.text(query, "query")
            if self.embed is None:
                raise BadRequestError(f"method={self.method!r} has no text model; queries need 'ranker' or 'content'",
                                      param="query")
            qv = self.embed([query])[0].astype(np.float64)
        u = self.state.users.get(str(user_id)) if user_id is not None else None
        s = self._user_scores(u, exclude_seen, qv)
        top = _topk(s, k)
        return [(self.item_ids[i], float(s[i])) for i in top]

    def similar_items(self, product_id: str, k: int = 10) -> list[tuple[str, float]]:
        """Products nearest a product by text vector, nudged by co-visitation."""
        self._need_fit()
        V.positive_int(k, "k")
        i = self._item(product_id)
        if self.E.shape[1] <= 1:
            raise BadRequestError(f"method={self.method!r} has no item vectors", param="method")
        S = self.state.seen.astype(np.float64)
        co = S[:, i] @ S / max(S[:, i].sum(), 1.0)
        s = self.E @ self.E[i] + 0.5 * co
        s[i] = -np.inf
        return [(self.item_ids[j], float(s[j])) for j in _topk(s, k)]

    def _item(self, product_id) -> int:
        if not isinstance(product_id, str):
            raise BadRequestError(f"product_id must be a string, got {type(product_id).__name__}", param="product_id")
        if product_id not in self.item_index:
            raise NotFoundError(f"no product {product_id!r} in the catalog", param="product_id")
        return self.item_index[product_id]

    # --------------------------------------------------------------- explain
    def explain(self, user_id, product_id: str, *, query: Optional[str] = None, generate: bool = False,
                model: str = "smollm2-135m-instruct") -> str:
        """A one-line reason for recommending `product_id` to `user_id`
        (template-based: the nearest item in the user's history, a favourite
        brand or category, the usual price range, popularity).

        generate=True has the chat `model` rephrase that reason as one
        friendly line; the line is kept only if it names the product and adds
        no number the template lacks, else the template line is returned."""
        line = self._explain(user_id, product_id, query)
        if not generate:
            return line
        return _rephrase_reason(line, str(self.products.iloc[self._item(product_id)].get("name", product_id)), model)

    def _explain(self, user_id, product_id: str, query: Optional[str]) -> str:
        self._need_fit()
        i = self._item(product_id)
        st = self.state
        p = self.products.iloc[i]
        name = p.get("name", product_id)
        u = st.users.get(str(user_id)) if user_id is not None else None
        reasons = []
        if query:
            reasons.append(f"it matches your search for \u201c{query}\u201d")
        if u is not None and st.activity[u] > 0:
            hist = np.flatnonzero(st.seen[u])
            if self.E.shape[1] > 1 and len(hist):
                sims = self.E[hist] @ self.E[i]
                sims[hist == i] = -np.inf
                j = hist[int(np.argmax(sims))]
                if sims.max() > 0.45:
                    ev = self.events[(self.events["user_id"] == str(user_id)) &
                                     (self.events["product_id"] == self.item_ids[j])]["event"]
                    verb = "bought" if (ev == "purchase").any() else ("added to your cart" if (ev == "cart").any() else "viewed")
                    reasons.append(f"it is similar to the {self.products.iloc[j].get('name', self.item_ids[j])} you {verb}")
            if "brand" in p and st.brand[u, i] >= 0.25:
                reasons.append(f"you often shop {p['brand']}")
            elif "category" in p and st.cat[u, i] >= 0.3:
                reasons.append(f"{p['category']} is one of your favourite categories")
            if np.isfinite(st.logp[u]) and np.isfinite(self.log_price[i]) and abs(self.log_price[i] - st.logp[u]) < 0.25:
                reasons.append(f"it is in your usual price range (around ${math.expm1(st.logp[u]):.0f})")
            if st.covis[u, i] > 0.05 and len(reasons) < 2:
                reasons.append("shoppers with a history like yours looked at it too")
        if len(reasons) < 2 and st.pop[i] >= np.quantile(st.pop, 0.8):
            where = f" in {p['category']}" if "category" in p else ""
            reasons.append(f"it is one of the most popular picks{where}")
        if not reasons:
            reasons.append("it is a new arrival that fits what you browse" if st.pop[i] == 0 else "it is well rated by other shoppers")
        head = ", and ".join(reasons[:2])
        return f"We recommend the {name} because {head}."

    # -------------------------------------------------------------- evaluate
    def evaluate(self, test_events, k: int = 10, *, users: str = "known") -> dict:
        """recall@k, NDCG@k (binary relevance) and catalog coverage on later
        events. The relevant items of a user are those they touched in
        `test_events` and had not touched in the training events.
        users="known" scores users with a training history (the others get
        popular items whatever the method); "all" scores every test user."""
        self._need_fit()
        V.positive_int(k, "k")
        V.one_of(users, "users", ("known", "all"))
        te = _events(test_events, "test_events")
        te = te[te["product_id"].isin(self.item_index)]
        st = self.state
        recall, ndcg, hits_any = [], [], []
        recommended = set()
        discount = 1.0 / np.log2(np.arange(2, k + 2))
        for user, items in te.groupby("user_id")["product_id"].apply(set).items():
            u = st.users.get(user)
            if u is None and users == "known":
                continue
            rel = {self.item_index[p] for p in items}
            if u is not None:
                rel = {i for i in rel if not st.seen[u, i]}
            if not rel:
                continue
            top = _topk(self._user_scores(u, True), k)
            recommended.update(top.tolist())
            hit = np.array([i in rel for i in top], dtype=float)
            recall.append(hit.sum() / len(rel))
            ideal = discount[: min(len(rel), k)].sum()
            ndcg.append(float((hit * discount[: len(hit)]).sum() / ideal))
            hits_any.append(float(hit.any()))
        if not recall:
            raise BadRequestError("no test user has a new item to predict (check the split and users=)",
                                  param="test_events")
        return {"recall": float(np.mean(recall)), "ndcg": float(np.mean(ndcg)),
                "coverage": len(recommended) / len(self.item_ids), "hit_rate": float(np.mean(hits_any)),
                "n_users": len(recall), "k": k}


_chat_models: dict = {}


def _rephrase_reason(line: str, name: str, model) -> str:
    import re

    if isinstance(model, str):
        if model not in _chat_models:
            import ecomlm

            _chat_models[model] = ecomlm.load(model)
        model = _chat_models[model]
    msgs = [{"role": "system", "content": "You write one short, friendly sentence for a shop's recommendation "
             "widget. Keep the product name and the reason; add nothing else."},
            {"role": "user", "content": f"Rewrite as one friendly sentence addressed to the shopper: {line}"}]
    out = model.chat(msgs, max_tokens=48, temperature=0, stop=["\n"]).strip().strip('"')
    nums = set(re.findall(r"\d+(?:\.\d+)?", line))
    if (not out or name.lower() not in out.lower() or len(out) > 220 or not out.endswith((".", "!"))
            or any(n not in nums for n in re.findall(r"\d+(?:\.\d+)?", out))):
        return line
    return out


def _topk(s: np.ndarray, k: int) -> np.ndarray:
    finite = np.flatnonzero(np.isfinite(s))
    if len(finite) == 0:
        return finite
    k = min(k, len(finite))
    part = finite[np.argpartition(-s[finite], k - 1)[:k]]
    return part[np.lexsort((part, -s[part]))]


def compare_methods(products, train_events, test_events, k: int = 10, *, model: str = DEFAULT_EMBEDDING_MODEL,
                    embedder=None, methods=(("random", None), ("popularity", None), ("content", None),
                                            ("ranker", "logistic"), ("ranker", "gbdt")), seed: int = 0):
    """Fit each method on the training events and evaluate on the test events:
    a DataFrame with one row a method (recall, ndcg, coverage, hit_rate)."""
    import pandas as pd

    rows = []
    for method, ranker in methods:
        rec = Recommender(method, ranker=ranker or "gbdt", model=model, embedder=embedder, seed=seed)
        rec.fit(products, train_events)
        r = rec.evaluate(test_events, k=k)
        rows.append({"method": method if ranker is None else f"{method} ({ranker})", **r})
    return pd.DataFrame(rows).set_index("method")
