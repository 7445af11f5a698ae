//! openraft's network over the node's wire: its QUIC endpoint, or the simulator's network.

use std::net::SocketAddr;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;

use super::rpc::{decode, encode, RaftRpc, Request, Response};
use crate::net::{NetError, Wire};
use crate::raft::{NodeId, TypeConfig};

/// Makes connections to the replicas of one chain.
#[derive(Clone)]
pub struct Network {
    endpoint: Wire,
    chain: u32,
}

impl Network {
    /// Raft traffic of `chain` over `endpoint`.
    pub fn new(endpoint: Wire, chain: u32) -> Self {
        Self { endpoint, chain }
    }
}

/// A connection to one replica (the endpoint shares one QUIC connection per peer).
pub struct Peer {
    endpoint: Wire,
    chain: u32,
    target: NodeId,
    addr: Result<SocketAddr, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            endpoint: self.endpoint.clone(),
            chain: self.chain,
            target,
            addr: node.addr.parse().map_err(|e| format!("bad address {:?} of node {target}: {e}", node.addr)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

impl Peer {
    async fn call<E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<Response, RPCError<NodeId, BasicNode, E>> {
        let addr = self.addr.clone().map_err(|m| RPCError::Unreachable(Unreachable::new(&Msg(m))))?;
        let req = encode(&Request::Raft { chain: self.chain, rpc });
        let bytes = self.endpoint.call(self.target, addr, req, option.hard_ttl()).await.map_err(|e: NetError| {
            if e.is_retryable() {
                RPCError::Unreachable(Unreachable::new(&e))
            } else {
                RPCError::Network(NetworkError::new(&e))
            }
        })?;
        decode(&bytes).map_err(|m| RPCError::Network(NetworkError::new(&Msg(m))))
    }

    fn unexpected<E: std::error::Error>(r: Response) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Network(NetworkError::new(&Msg(format!("unexpected answer: {r:?}"))))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRpc::Append(rpc), &option).await? {
            Response::Append(Ok(r)) => Ok(r),
            Response::Append(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(RaftRpc::Snapshot(rpc), &option).await? {
            Response::Snapshot(Ok(r)) => Ok(r),
            Response::Snapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRpc::Vote(rpc), &option).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            other => Err(Self::unexpected(other)),
        }
    }
}
